"""``celery-gcs results list|show``: browse stored results by state, task name and date, without reading them.

``list`` pages through the bucket's listing (one request per 1,000 results)
and filters on the custom metadata each result object carries (state, task
name, date done, written in the same PUT as the result); ``show`` reads one
result through the backend. The bucket and prefix come from ``--backend`` or
``$CELERY_RESULT_BACKEND``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import contract, meta, settings
from ..errors import CeleryGCSError
from ..stores.result_store import Listed, ResultStore

E_NO_BACKEND = (
    "no result backend named: pass --backend gcs://BUCKET[/PREFIX] or export CELERY_RESULT_BACKEND "
    '(eval "$(celery-gcs dev up)" does, for the local stack)'
)
E_BAD_SINCE = "--since takes a number and a unit (s, m, h or d), such as 30m or 2d; got {value!r}"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


@dataclass(frozen=True)
class Result:
    """A task result as the listing shows it."""

    task_id: str
    state: str
    task: str
    date_done: str
    updated: dt.datetime | None


def since(value: str) -> dt.timedelta:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", value.strip())
    if not match:
        raise argparse.ArgumentTypeError(E_BAD_SINCE.format(value=value))
    return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="celery-gcs results", description=__doc__.split("\n\n")[0].strip('"'))
    parser.add_argument("--backend", help="gcs://BUCKET[/PREFIX] (default: $CELERY_RESULT_BACKEND)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list task results (in name order), filtered by their metadata")
    listing.add_argument("--state", help="only results in this state (SUCCESS, FAILURE, ...)")
    listing.add_argument("--name", help="only results of this task name")
    listing.add_argument("--since", type=since, help="only results stored within this long (the object's update time), e.g. 1h, 30m, 2d")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = actions.add_parser("show", help="read one task's result")
    show.add_argument("task_id")
    return parser


def results(store: ResultStore) -> Iterator[Result]:
    """Every task result under the backend's prefix, from the listing alone."""
    for listed in store.list(contract.TASK_KEY_PREFIX):
        yield _result(listed)


def _result(listed: Listed) -> Result:
    encoded = listed.name[len(contract.TASK_KEY_PREFIX) :]
    task_id = encoded if encoded.startswith("%hash-") else urllib.parse.unquote(encoded)
    data = listed.metadata
    return Result(
        task_id=task_id,
        state=data.get(meta.META_STATE, "?"),
        task=data.get(meta.META_TASK, ""),
        date_done=data.get(meta.META_DATE_DONE, ""),
        updated=listed.updated,
    )


def matches(result: Result, *, state: str | None, name: str | None, after: dt.datetime | None) -> bool:
    if state and result.state != state.upper():
        return False
    if name and result.task != name:
        return False
    return after is None or (result.updated is not None and result.updated >= after)


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    url = args.backend or os.environ.get("CELERY_RESULT_BACKEND")
    if not url:
        err.print(f"[red]{escape(E_NO_BACKEND)}[/]", highlight=False)
        return 2
    try:
        config = settings.parse(url, {})
        if args.action == "show":
            return show(url, args.task_id, out)
        after = dt.datetime.now(dt.UTC) - args.since if args.since else None
        found = (r for r in results(ResultStore(config)) if matches(r, state=args.state, name=args.name, after=after))
        return print_list(found, out, as_json=args.json)
    except CeleryGCSError as exc:
        err.print(f"[red]{escape(str(exc))}[/]", highlight=False)
        return 1


def print_list(found: Iterator[Result], out: Console, *, as_json: bool) -> int:
    if as_json:
        for result in found:
            row = {**result.__dict__, "updated": result.updated.isoformat() if result.updated else None}
            out.file.write(json.dumps(row) + "\n")
        return 0
    table = Table("task id", "state", "task", "date done")
    for result in found:
        table.add_row(escape(result.task_id), result.state, escape(result.task), result.date_done)
    out.print(table)
    return 0


def show(url: str, task_id: str, out: Console) -> int:
    from celery import Celery

    from ..backend import GCSBackend

    # The backend built from the URL itself: an app's result_backend would lose
    # to an exported CELERY_RESULT_BACKEND, and --backend must win.
    backend = GCSBackend(Celery("celery-gcs-results", set_as_current=False), url=url)
    state = backend.get_task_meta(task_id)
    out.file.write(json.dumps(state, indent=2, default=repr) + "\n")
    return 0 if state.get("status") != "PENDING" else 1
