"""The worker image's helpers: its environment check, health bootstep and Kubernetes probes.

Installed with the runtime (the image runs them), imported by nothing in it.
"""
