"""What the commands that read a backend share (``results``, ``chords``): ``--backend``, ``--timeout``, their errors.

``start`` parses the arguments and finds the backend's URL (``--backend``,
else ``$CELERY_RESULT_BACKEND``); the ``Command`` it returns builds the
settings with ``--timeout`` as each request's limit, retries included (not the
backend's 60 s per request and two-minute retry deadline, which suit a
worker, not a person waiting at a prompt), and words a failure, naming the
service and endpoint that did not answer.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape

from .. import conventions, settings
from ..errors import CeleryGCSError, TransientError
from .options import positive_seconds

E_NO_BACKEND = (
    "no result backend named: pass --backend gcs://BUCKET[/PREFIX] or export CELERY_RESULT_BACKEND "
    '(eval "$(celery-gcs dev up)" does, for the local stack)'
)
E_UNREACHABLE = (
    "no answer from {service} ({endpoint}) within {timeout:g} s, retries included (--timeout): {reason}. "
    "Check network access and credentials; on the local stack, start it (celery-gcs dev up) and export the "
    "{variable} it prints"
)
#: How long each request may take, retries included, unless --timeout says.
DEFAULT_TIMEOUT = 10.0
_SCHEMES = {
    "gs": conventions.URL_SCHEME
}  # the built-in backend's layout is ours: readable as it is


@dataclass(frozen=True)
class Service:
    """A service a command reads, as its unreachable error names it."""

    name: str
    #: The variable pointing the clients at its emulator.
    emulator_variable: str
    default_endpoint: str

    def endpoint(self) -> str:
        return os.environ.get(self.emulator_variable) or self.default_endpoint


CLOUD_STORAGE = Service("Cloud Storage", "STORAGE_EMULATOR_HOST", "storage.googleapis.com")
FIRESTORE = Service("Firestore", "FIRESTORE_EMULATOR_HOST", "firestore.googleapis.com")


def backend_arguments(backend_help: str) -> argparse.ArgumentParser:
    """``--backend`` and ``--timeout``, for a parser's ``parents`` (before or after the action: the later wins)."""
    shared = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an absent one sets nothing, so it does not undo one given before the action.
    shared.add_argument(
        "--backend",
        default=argparse.SUPPRESS,
        help=f"{backend_help}; default: $CELERY_RESULT_BACKEND",
    )
    shared.add_argument(
        "--timeout",
        type=positive_seconds,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help=f"give up on a request after this long, retries included (default {DEFAULT_TIMEOUT:g})",
    )
    return shared


def readable_url(url: str) -> str:
    """``url`` for reading: a ``gs://`` URL of the built-in backend names the same objects.

    So does one that selects a backend class (``module:Class+gs://...``, as
    ``celery-gcs dev up --result-backend gs`` exports).
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.rpartition("+")[2]
    return f"{_SCHEMES.get(scheme, scheme)}{sep}{rest}"


@dataclass(frozen=True)
class Command:
    """A reading command, started: its arguments, consoles, backend URL and timeout."""

    args: argparse.Namespace
    out: Console
    err: Console
    url: str

    @property
    def timeout(self) -> float:
        return getattr(self.args, "timeout", DEFAULT_TIMEOUT)

    @property
    def limits(self) -> dict[str, float]:
        """The backend settings that make ``--timeout`` each request's limit, retries included."""
        return {"gcs_timeout": self.timeout, "gcs_retry_deadline": self.timeout}

    def settings(self) -> settings.Settings:
        return settings.parse(self.url, self.limits)

    def failed(self, exc: CeleryGCSError, service: Service) -> int:
        """Say what went wrong (a request that outlived ``--timeout`` names ``service``); exit status 1."""
        message = str(exc)
        if isinstance(exc, TransientError):
            message = E_UNREACHABLE.format(
                service=service.name,
                endpoint=service.endpoint(),
                timeout=self.timeout,
                reason=exc,
                variable=service.emulator_variable,
            )
        self.err.print(f"[red]{escape(message)}[/]", highlight=False)
        return 1


def start(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Command | None:
    """The command ``argv`` asks for; None (said on stderr) when no backend is named."""
    args = parser.parse_args(argv)
    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    url = getattr(args, "backend", None) or os.environ.get("CELERY_RESULT_BACKEND")
    if not url:
        err.print(f"[red]{escape(E_NO_BACKEND)}[/]", highlight=False)
        return None
    return Command(args, out, err, readable_url(url))


def run(
    parser: argparse.ArgumentParser,
    argv: Sequence[str],
    service: Service,
    act: Callable[[Command, settings.Settings], int],
) -> int:
    """Start the command and ``act`` on its settings; its errors said as ``failed`` says them.

    Exit status 2 when no backend is named, 1 when reading failed, else what ``act`` returns.
    """
    command = start(parser, argv)
    if command is None:
        return 2
    try:
        return act(command, command.settings())
    except CeleryGCSError as exc:
        return command.failed(exc, service)
