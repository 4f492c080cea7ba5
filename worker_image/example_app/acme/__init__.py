"""acme: the example team's tasks, as Pulumi.dev.yaml and Pulumi.prod.yaml build them into the worker image."""
