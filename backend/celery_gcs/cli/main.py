"""The ``celery-gcs`` entry point: names the commands, checks their extras, hands each its arguments.

::

    celery-gcs demo                      the whole stack on one machine and a sample workload
    celery-gcs dev up|down|status        the local stack alone, for your own app
    celery-gcs doctor --bucket B --project P [--database D]
                                         check a deployment (or the emulators)
    celery-gcs results list|show|delete|purge
                                         browse and remove stored results
    celery-gcs chords list [--open] [--stuck MINUTES] [--json] | show GROUP_ID
                                         chords in Firestore and what each waits for

Each command is a module of this package with a ``main(argv)`` that parses
its own options. It is imported only when it runs, after its extras are
found, so ``celery-gcs --help`` and ``--version`` work with none installed
and a missing extra is named with the line that installs it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from .. import __version__
from ..install import install_line

#: Exit code when the output's reader went away (128 + SIGPIPE, as a shell reports it).
EXIT_BROKEN_PIPE = 141
#: Exit code when a command's extras are not installed.
EXIT_MISSING_EXTRA = 2
E_MISSING_EXTRA = "celery-gcs {command} needs the {extras} extra{s}, which {are} not installed; install {them} with:\n  {line}"


@dataclass(frozen=True)
class Command:
    help: str
    extras: tuple[str, ...]


COMMANDS = {
    "demo": Command("run the emulators, Redis, a prefork worker and a sample workload", ("cli", "local")),
    "dev": Command("start, stop or show the local stack (emulators and Redis) for your own app", ("cli", "local")),
    "doctor": Command("check a deployment: bucket, lifecycle, access, Firestore, TTL, permissions", ("cli",)),
    "results": Command("list stored results by state, task and date, show, delete or purge them", ("cli",)),
    "chords": Command("list chords in Firestore (open, stuck) and show what one waits for", ("cli",)),
}

#: The modules each extra brings; one missing means the extra is not installed.
EXTRA_MODULES = {
    "cli": ("rich",),
    "local": ("gcp_storage_emulator", "hpack", "hyperframe", "redis", "psutil", "prometheus_client"),
}


def missing_extras(extras: Sequence[str]) -> list[str]:
    return [extra for extra in extras if not all(importlib.util.find_spec(m) for m in EXTRA_MODULES[extra])]


def _parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<8} {command.help}" for name, command in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="celery-gcs",
        usage="%(prog)s [-h] [--version] COMMAND [OPTIONS ...]",
        description="Tools for celery-gcs, the Celery result backend on Google Cloud Storage.",
        epilog=f"commands:\n{listing}\n\n`celery-gcs COMMAND --help` shows a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"celery-gcs {__version__}")
    parser.add_argument("command", choices=COMMANDS, metavar="COMMAND", help="one of: " + ", ".join(COMMANDS))
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    if not argv:  # argparse would say "required: COMMAND, arguments"; the help says more
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    command = COMMANDS[args.command]
    missing = missing_extras(command.extras)
    if missing:
        print(
            E_MISSING_EXTRA.format(
                command=args.command,
                extras=" and ".join(missing),
                s="s" if len(missing) > 1 else "",
                are="are" if len(missing) > 1 else "is",
                them="them" if len(missing) > 1 else "it",
                line=install_line(command.extras),
            ),
            file=sys.stderr,
        )
        return EXIT_MISSING_EXTRA
    module = importlib.import_module(f"{__package__}.{args.command}")
    try:
        return module.main(args.arguments)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): as a shell tool would, stop quietly. Python
        # flushes stdout again at exit, so point it where that cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
