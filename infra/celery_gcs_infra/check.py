"""``python -m celery_gcs_infra.check STACK``: a stack's config checked offline, before ``pulumi up``.

Runs the project's Pulumi program under Pulumi's mocks (:mod:`celery_gcs_infra.offline`)
with what ``pulumi up`` would pass it for STACK: Pulumi.yaml's defaults and
Pulumi.STACK.yaml. No cloud account, credentials or Pulumi backend are needed,
and nothing is created. Every check the program makes runs: unknown keys (with
the one probably meant), missing and malformed values, an ``appDir`` or
``appRequirements`` outside the project, unhashed requirements, a ``celeryApp``
not in ``appDir``, settings that do not go together. Exit 0 with a summary
when it would deploy, 1 with the problem and its fix when not, 2 when there is
no such stack file.

What it cannot know: whether the project, quotas, names and permissions exist
on GCP (``pulumi preview`` asks GCP), and encrypted values (``--secret``),
which only the Pulumi CLI can decrypt.
"""

from __future__ import annotations

import argparse
import collections
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from . import offline
from .settings import DEFAULT_ORGANIZATION

#: Exit codes: would deploy / a problem in the config / no stack file to check.
EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2

E_NO_STACK_FILE = (
    "no stack file {path}: create the stack with `pulumi stack init {stack}` and set its keys with "
    "`pulumi config set celery-gcs:KEY VALUE`, or copy one of infra/examples/ there"
)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m celery_gcs_infra.check",
        description="Check a stack's config offline: run the Pulumi program under Pulumi's mocks with "
        "Pulumi.yaml's defaults and Pulumi.STACK.yaml, as `pulumi up` would, creating nothing.",
    )
    parser.add_argument("stack", help="the stack to check (reads Pulumi.STACK.yaml)")
    parser.add_argument(
        "--project-dir",
        type=Path,
        default=Path.cwd(),
        help="the Pulumi project: the directory with Pulumi.yaml (default: the current one)",
    )
    parser.add_argument(
        "--organization",
        default=DEFAULT_ORGANIZATION,
        help="the Pulumi organization the stack is in, part of its default name prefix "
        f"(default: {DEFAULT_ORGANIZATION}, a self-managed backend's)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    project_dir = args.project_dir.resolve()
    stack_file = project_dir / f"Pulumi.{args.stack}.yaml"
    if not stack_file.is_file():
        print(E_NO_STACK_FILE.format(path=stack_file, stack=args.stack), file=sys.stderr)
        return EXIT_USAGE
    config, secret_keys, project = offline.stack_config(project_dir, args.stack)
    main_dir = yaml.safe_load((project_dir / "Pulumi.yaml").read_text()).get("main", ".")
    mocks = Counting()
    try:
        outputs = offline.run(
            project_dir / main_dir, stack=args.stack, config=config, secret_keys=secret_keys,
            project=project, organization=args.organization, mocks=mocks,
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 (what the program raised is the finding)
        print(f"{stack_file.name}: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    kinds = ", ".join(f"{count} {kind}" for kind, count in mocks.kinds.most_common(6))
    print(f"{stack_file.name}: the program runs to the end: {sum(mocks.kinds.values())} resources ({kinds}, ...).")
    for key in ("prefix", "result_backend", "bucket", "namespace"):
        if key in outputs and not outputs[key][1]:
            print(f"  {key}: {outputs[key][0]}")
    if secret_keys:
        print(f"  not checked offline: the encrypted value{'s' if len(secret_keys) > 1 else ''} of {', '.join(secret_keys)}")
    print("  not checked offline: that the project, quotas and permissions exist on GCP (pulumi preview asks it)")
    return EXIT_OK


class Counting(offline.OfflineMocks):
    """The offline mocks, counting resources by type for the summary."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: collections.Counter[str] = collections.Counter()

    def new_resource(self, args: Any) -> tuple[str, dict]:
        self.kinds[args.typ.rsplit(":", 1)[-1]] += 1
        return super().new_resource(args)


if __name__ == "__main__":
    sys.exit(main())
