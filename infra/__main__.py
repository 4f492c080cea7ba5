"""The celery-gcs Pulumi program: stack config in, one CeleryStack, its outputs out.

Pulumi runs this file with ``infra/`` as the working program directory
(``main: infra/`` in Pulumi.yaml); the repository root goes on ``sys.path`` so
the program imports ``infra.*`` exactly as a team's own program would.
"""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import pulumi

from infra import settings
from infra.components import CeleryStack

args = settings.from_pulumi()
stack = CeleryStack("celery", args)
for name, value in stack.outputs().items():
    pulumi.export(name, value)
