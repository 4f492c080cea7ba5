"""The ``celery-gcs`` command.

::

    celery-gcs demo                      the whole stack on one machine and a sample workload
    celery-gcs dev up|down|status        the local stack alone, for your own app
    celery-gcs doctor --bucket B --project P [--database D]
                                         check a deployment (or the emulators)

Each subcommand lives in its own module (``demo``, ``dev``, ``doctor``) and is
imported only when it runs, so ``celery-gcs --help`` stays quick.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import contract


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def _seconds(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="celery-gcs",
        description="Tools for celery-gcs, the Celery result backend on Google Cloud Storage.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run the emulators, Redis, a prefork worker and a sample workload",
        description="Start the GCS and Firestore emulators, Redis and a real prefork worker, run a group, "
        "a chain and a chord, and summarise what it took. Ctrl-C stops everything it started.",
    )
    demo.add_argument(
        "--chord-size", type=_positive, default=1000, help="parts in the chord (default 1000)"
    )
    demo.add_argument(
        "--group-size", type=_positive, default=100, help="tasks in the group (default 100)"
    )
    demo.add_argument(
        "--chain-length", type=_positive, default=10, help="tasks in the chain (default 10)"
    )
    demo.add_argument(
        "--concurrency", type=_positive, default=2, help="worker pool processes (default 2)"
    )
    demo.add_argument(
        "--timeout",
        type=_seconds,
        default=600.0,
        help="seconds the workload may take (default 600)",
    )
    demo.add_argument(
        "--json", type=Path, metavar="PATH", help="also write the summary as JSON to PATH"
    )
    demo.add_argument(
        "--use-env",
        action="store_true",
        help="use the emulators and Redis named by STORAGE_EMULATOR_HOST, FIRESTORE_EMULATOR_HOST and "
        'CELERY_BROKER_URL (eval "$(celery-gcs dev up)") instead of starting them',
    )

    dev = commands.add_parser(
        "dev",
        help="start, stop or show the local stack (emulators and Redis) for your own app",
        description="The GCS emulator, the Firestore emulator and Redis on free ports, left running "
        'between commands. `eval "$(celery-gcs dev up)"` starts them and exports their addresses.',
    )
    dev.add_argument("action", choices=("up", "down", "status"))
    dev.add_argument(
        "--state-dir",
        type=Path,
        help="where the state file and logs live (default: $CELERY_GCS_DEVSTACK_DIR, else ./.devstack)",
    )
    dev.add_argument("--json", action="store_true", help="status as JSON")

    doctor = commands.add_parser(
        "doctor",
        help="check a deployment: bucket, lifecycle, access, Firestore, TTL, permissions",
        description="Check that a bucket and a Firestore database are ready for celery-gcs. Uses the "
        "emulators when STORAGE_EMULATOR_HOST / FIRESTORE_EMULATOR_HOST are set, else Application Default "
        "Credentials. Exits non-zero when any check fails.",
    )
    doctor.add_argument("--bucket", required=True, help="the result bucket")
    doctor.add_argument(
        "--project", required=True, help="the GCP project (of the bucket and Firestore)"
    )
    doctor.add_argument(
        "--database",
        default=contract.FIRESTORE_DATABASE,
        help="Firestore database (default %(default)s)",
    )
    doctor.add_argument(
        "--collection",
        default=contract.FIRESTORE_COLLECTION,
        help="Firestore collection of chord documents (default %(default)s)",
    )
    doctor.add_argument(
        "--result-expires",
        type=_seconds,
        default=float(contract.RESULT_EXPIRES_SECONDS),
        metavar="SECONDS",
        help="your app's result_expires (default Celery's 86400; 0: results never expire)",
    )
    doctor.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="per check, retries included (default 10)",
    )
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from . import demo

            workload = demo.Workload(
                group=args.group_size, chain=args.chain_length, chord=args.chord_size
            )
            options = demo.Options(
                workload=workload,
                concurrency=args.concurrency,
                use_env=args.use_env,
                json_path=args.json,
                timeout=args.timeout,
            )
            return demo.main(options)
        if args.command == "dev":
            from . import dev

            return dev.main(args.action, state_dir=args.state_dir, as_json=args.json)
        from . import doctor

        config = doctor.Config(
            bucket=args.bucket,
            project=args.project,
            database=args.database,
            collection=args.collection,
            result_expires=args.result_expires,
            timeout=args.timeout,
        )
        return doctor.main(config, as_json=args.json)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
