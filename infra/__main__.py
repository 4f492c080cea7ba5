"""The celery-gcs Pulumi program: stack config in, one CeleryStack, its outputs out.

Pulumi runs this file (``main: infra/`` in Pulumi.yaml) in the virtualenv where
celery-gcs is installed with its ``infra`` extra, so it imports the components
from ``celery_gcs_infra`` exactly as a team's own program would. The worker
image is built from this checkout unless the stack names a prebuilt ``image``.
"""

from pathlib import Path

import pulumi
from celery_gcs_infra import CeleryStack, settings

CHECKOUT = Path(__file__).resolve().parents[1]

args = settings.from_pulumi(build_context=str(CHECKOUT))
stack = CeleryStack("celery", args)
for name, value in stack.outputs().items():
    pulumi.export(name, value)
