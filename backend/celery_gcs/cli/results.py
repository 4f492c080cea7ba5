"""``celery-gcs results list|show|delete|purge``: stored results by state, task name and date.

``list`` pages through the bucket's listing (one request per 1,000 results)
and filters on the custom metadata each result object carries (state, task
name, date done, written in the same PUT as the result), newest first;
``show`` reads one result through the backend; ``delete`` removes results by
task id; ``purge`` removes every result a filter matches, counting them first
(``--dry-run`` stops there). The bucket and prefix come from ``--backend``
(``gcs://`` or the built-in backend's ``gs://``, same layout) or
``$CELERY_RESULT_BACKEND``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import json
import re
import sys
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from celery import states
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import conventions, meta, settings
from ..keys import encode_id
from ..stores.result_store import LIST_PAGE, Listed, ResultStore
from . import reading
from .options import positive

E_BAD_SINCE = "{flag} takes a number and a unit (s, m, h or d), such as 30m or 2d; got {value!r}"
E_BAD_MOMENT = (
    "--before takes an age (a number and a unit: s, m, h or d, such as 7d) or a date "
    "(2026-12-01, 2026-12-01T12:00, UTC unless it says otherwise); got {value!r}"
)
E_NOT_STORED = (
    "no result stored for task id {task_id!r} in {where}: never stored, deleted, or stored under "
    "another bucket or prefix (pass that one with --backend)"
)
E_EXPIRED = (
    "the result stored for task id {task_id!r} ({state}) expired at {expires_at} (result_expires, or "
    "gcs_ttl): it reads as PENDING, and the bucket's lifecycle rule deletes it"
)
E_NO_MATCH = "no results match in {where}: {why}"
E_NEEDS_YES = "not deleting without --yes (stdin is not a terminal to ask on); --dry-run only counts"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


@dataclass(frozen=True)
class Result:
    """A task result as the listing shows it."""

    task_id: str
    state: str
    task: str
    date_done: str
    updated: dt.datetime | None
    #: The object's name under the backend's prefix.
    key: str
    #: When it expires (after which it reads as PENDING), if it does.
    expires_at: dt.datetime | None = None

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= dt.datetime.now(dt.UTC)

    @property
    def done(self) -> dt.datetime | None:
        """When it was stored: its date done, else the object's update time."""
        try:
            when = dt.datetime.fromisoformat(self.date_done)
        except ValueError:
            return self.updated
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)

    def row(self) -> dict[str, str | None]:
        return {
            "task_id": self.task_id,
            "state": self.state,
            "task": self.task,
            "date_done": self.date_done,
            "updated": self.updated.isoformat() if self.updated else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "expired": self.expired,
        }


@dataclass(frozen=True, kw_only=True)
class Filter:
    """What ``list`` and ``purge`` select, all on the listing's metadata."""

    state: str | None = None
    name: str | None = None
    after: dt.datetime | None = None
    before: dt.datetime | None = None

    def __call__(self, result: Result) -> bool:
        if self.state and result.state != self.state.upper():
            return False
        if self.name and result.task != self.name:
            return False
        done = result.done
        if self.after and (done is None or done < self.after):
            return False
        return not (self.before and (done is None or done >= self.before))

    def why_nothing(self, seen: Sequence[Result]) -> str:
        """Why no result matched, with what is there instead."""
        if not seen:
            return "no task results are stored there"
        reasons = []
        if self.state and self.state.upper() not in {r.state for r in seen}:
            known = "" if self.state.upper() in states.ALL_STATES else f" (Celery's states: {', '.join(sorted(states.ALL_STATES))})"
            found = ", ".join(sorted({r.state for r in seen}))
            reasons.append(f"no result is in state {self.state.upper()!r}{known}; stored states: {found}")
        if self.name and self.name not in {r.task for r in seen}:
            names = sorted({r.task for r in seen if r.task})
            close = difflib.get_close_matches(self.name, names, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
            reasons.append(f"no result of task {self.name!r}{hint}; stored task names: {shown}")
        return "; ".join(reasons) or "none is in the date range asked for"


def ago(value: str, flag: str = "--since") -> dt.timedelta:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", value.strip())
    if not match:
        raise argparse.ArgumentTypeError(E_BAD_SINCE.format(flag=flag, value=value))
    return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def since(value: str) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - ago(value)


def moment(value: str) -> dt.datetime:
    """An age (``7d``: that long ago) or a date, as a moment in UTC."""
    try:
        return dt.datetime.now(dt.UTC) - ago(value, "--before")
    except argparse.ArgumentTypeError:
        pass
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(E_BAD_MOMENT.format(value=value)) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def parser() -> argparse.ArgumentParser:
    description = (
        "Browse and remove stored task results: list them by state, task name and date (from the "
        "bucket's listing, without reading them), show one, delete some by id, or purge what a filter "
        "matches. The bucket and prefix come from --backend or $CELERY_RESULT_BACKEND."
    )
    backend = reading.backend_arguments("gcs://BUCKET[/PREFIX], or a gs:// URL of Celery's built-in backend (same layout)")
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--state", help="only results in this state (SUCCESS, FAILURE, ...)")
    filters.add_argument("--name", help="only results of this task name, as Celery names it (proj.add)")
    filters.add_argument("--since", type=since, help="only results done within this long, e.g. 1h, 30m, 2d")
    filters.add_argument(
        "--before", type=moment, help="only results done before this: an age (7d) or a date (2026-12-01)"
    )
    parser = argparse.ArgumentParser(prog="celery-gcs results", description=description, parents=[backend])
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", parents=[backend, filters], help="list task results, newest first, filtered by their metadata"
    )
    listing.add_argument("--limit", type=positive, help="at most this many (the newest)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument(
        "--wide", action="store_true", help="never cut a column to the terminal's width (piped output never is)"
    )
    show = actions.add_parser("show", parents=[backend], help="read one task's result")
    show.add_argument("task_id")
    delete = actions.add_parser("delete", parents=[backend], help="delete the results of these task ids")
    delete.add_argument("task_ids", nargs="+", metavar="TASK_ID")
    purge = actions.add_parser(
        "purge",
        parents=[backend, filters],
        help="delete every result the filters match (all of them without one), after counting them",
    )
    purge.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    purge.add_argument("--yes", action="store_true", help="delete without asking")
    return parser


def results(store: ResultStore) -> Iterator[Result]:
    """Every task result under the backend's prefix, from the listing alone."""
    for listed in store.list(conventions.TASK_KEY_PREFIX):
        yield _result(listed)


def _result(listed: Listed) -> Result:
    encoded = listed.name[len(conventions.TASK_KEY_PREFIX) :]
    task_id = encoded if encoded.startswith("%hash-") else urllib.parse.unquote(encoded)
    data = listed.metadata
    return Result(
        task_id=task_id,
        state=data.get(meta.META_STATE, "?"),
        task=data.get(meta.META_TASK, ""),
        date_done=data.get(meta.META_DATE_DONE, ""),
        updated=listed.updated,
        key=listed.name,
        expires_at=listed.custom_time,
    )


def newest_first(found: Iterable[Result]) -> list[Result]:
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(found, key=lambda result: result.done or oldest, reverse=True)


def main(argv: Sequence[str]) -> int:
    return reading.run(parser(), argv, reading.CLOUD_STORAGE, act)


def act(command: reading.Command, config: settings.Settings) -> int:
    args, out, err = command.args, command.out, command.err
    where = f"gs://{config.bucket}/{config.object_name('')}"
    if args.action == "show":
        return show(command.url, args.task_id, out, err, where=where, limits=command.limits)
    store = ResultStore(config)
    if args.action == "delete":
        return delete(store, args.task_ids, out, err)
    chosen = Filter(state=args.state, name=args.name, after=args.since, before=args.before)
    seen = list(results(store))
    found = newest_first(r for r in seen if chosen(r))
    if not found and seen:
        err.print(E_NO_MATCH.format(where=where, why=escape(chosen.why_nothing(seen))), highlight=False)
        return 1
    if not seen:
        err.print(f"no task results are stored in {where}", highlight=False)
        if args.action == "list":
            return 0  # said; an empty table under it would read as a broken listing
    if args.action == "purge":
        return purge(store, found, listed=len(seen), where=where, args=args, out=out, err=err)
    return print_list(found[: args.limit], out, as_json=args.json, wide=args.wide)


def print_list(found: Sequence[Result], out: Console, *, as_json: bool, wide: bool = False) -> int:
    if as_json:
        for result in found:
            out.file.write(json.dumps(result.row()) + "\n")
        return 0
    plain = wide or not out.is_terminal
    if plain:  # every id whole, on one line, so it can be fed to `results show`
        out = Console(file=out.file, width=sys.maxsize >> 32, soft_wrap=True, color_system=None)
    table = Table("task id", "state", "task", "date done", box=None if plain else box.HEAVY_HEAD)
    for result in found:
        state = f"{result.state} (expired)" if result.expired else result.state
        table.add_row(escape(result.task_id), state, escape(result.task), result.date_done)
    out.print(table)
    return 0


def show(url: str, task_id: str, out: Console, err: Console, *, where: str, limits: dict[str, float]) -> int:
    from celery import Celery

    from ..backend import GCSBackend

    # The backend built from the URL itself: an app's result_backend would lose
    # to an exported CELERY_RESULT_BACKEND, and --backend must win.
    app = Celery("celery-gcs-results", set_as_current=False)
    app.conf.update(limits)
    backend = GCSBackend(app, url=url)
    state = backend.get_task_meta(task_id)
    out.file.write(json.dumps(state, indent=2, default=repr) + "\n")
    if state.get("status") != states.PENDING:
        return 0
    # PENDING is what Celery says of anything it cannot find: say which it is.
    raw = backend.get(backend.get_key_for_task(task_id))
    if raw is None:
        err.print(E_NOT_STORED.format(task_id=task_id, where=where), highlight=False)
        return 1
    stored = backend.decode(raw)
    expires_at = stored.get(meta.EXPIRES_FIELD) if isinstance(stored, dict) else None
    if expires_at:
        err.print(E_EXPIRED.format(task_id=task_id, state=stored.get("status"), expires_at=expires_at), highlight=False)
    return 1


def delete(store: ResultStore, task_ids: Sequence[str], out: Console, err: Console) -> int:
    keys = [conventions.TASK_KEY_PREFIX + encode_id(task_id) for task_id in task_ids]
    existed = store.remove_many(keys)
    for task_id, was in zip(task_ids, existed, strict=True):
        if not was:
            err.print(f"no result stored for task id {task_id!r}; nothing to delete", highlight=False)
    out.print(
        f"Deleted {sum(existed):,} of {len(task_ids):,} results ({len(keys):,} delete requests).",
        highlight=False,
    )
    return 0 if all(existed) else 1


def purge(
    store: ResultStore,
    found: Sequence[Result],
    *,
    listed: int,
    where: str,
    args: argparse.Namespace,
    out: Console,
    err: Console,
) -> int:
    pages = max(1, -(-listed // LIST_PAGE))
    out.print(
        f"{len(found):,} of {listed:,} results in {where} match (counted with {pages:,} list "
        f"request{'s' if pages > 1 else ''}); deleting them takes {len(found):,} delete requests, "
        f"in batches of {LIST_PAGE:,}.",
        highlight=False,
    )
    if args.dry_run or not found:
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            err.print(E_NEEDS_YES, highlight=False)
            return 2
        if input(f"Delete these {len(found):,} results? [y/N] ").strip().lower() not in ("y", "yes"):
            out.print("Nothing deleted.")
            return 1
    deleted = 0
    for start in range(0, len(found), LIST_PAGE):
        batch = found[start : start + LIST_PAGE]
        deleted += sum(store.remove_many([result.key for result in batch]))
        err.print(f"deleted {deleted:,} of {len(found):,}", highlight=False)
    gone = len(found) - deleted
    note = f" ({gone:,} were already gone)" if gone else ""
    out.print(f"Deleted {deleted:,} results with {len(found):,} delete requests{note}.", highlight=False)
    return 0
