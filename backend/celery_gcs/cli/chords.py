"""``celery-gcs chords list|show``: chords in Firestore, open or stuck, and what each waits for.

Reads Firestore only (the stores' ``ChordStore``), never GCS, and writes
nothing. ``list`` is one query over the chord collection (one read per chord
document it returns; with ``--open`` only those not marked done), then, for
each open chord it shows, one query over that chord's counters (one read per
counter: a chord of N parts has about N/16 + N/256 + ... of them). ``show`` is
one read of the chord document, one query over its counters and one over its
failed parts (one read per failed part, one if none). The database and
collection come from ``--backend`` or ``$CELERY_RESULT_BACKEND``, and each
read gives up after ``--timeout`` (10 s), retries included, as for
``celery-gcs results`` (``reading``): the emulators locally, Application
Default Credentials in production.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import conventions, settings
from ..keys import encode_id
from ..stores.chord_store import ChordStore, Inspected, Node
from . import reading

E_NO_CHORD = (
    "no chord {group_id!r} in Firestore collection {collection!r} of database {database!r}: never applied "
    "through celery-gcs, expired (its TTL), or under another backend (pass that one with --backend); "
    "`celery-gcs chords list` shows those there"
)
NONE_LISTED = "no {which} in Firestore collection {collection!r} of database {database!r}"
E_STUCK = "--stuck takes a number of minutes, 0 or more; got {value!r}"


@dataclass(frozen=True)
class ChordView:
    """What one chord is and waits for, from its documents alone."""

    group_id: str
    size: int | None
    #: Header parts counted (None when its counters were not read, or are gone: the chord ended).
    counted: int | None
    added: int
    added_pending: int
    failed_parts: list[str] | None
    header_done: bool
    done: bool
    claim_holder: str | None
    lease_until: dt.datetime | None
    created: dt.datetime | None
    age_seconds: float | None
    expires_at: dt.datetime | None
    waiting_for: str

    @property
    def state(self) -> str:
        return "done" if self.done else "open"

    def row(self) -> dict[str, object]:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields["state"] = self.state
        return {key: value.isoformat() if isinstance(value, dt.datetime) else value for key, value in fields.items()}


def group_id_of(key: str) -> str:
    encoded = key.removeprefix(conventions.CHORD_KEY_PREFIX)
    return encoded if encoded.startswith("%hash-") else urllib.parse.unquote(encoded)


def view(found: Inspected, counters: dict[Node, int] | None, failed: list[str] | None) -> ChordView:
    """The chord as ``list`` and ``show`` print it; ``counters`` None when they were not read."""
    chord = found.chord
    now = chord.read_time or dt.datetime.now(dt.UTC)
    leaves = {node: left for node, left in (counters or {}).items() if node.level == 0}
    counted = None
    if counters and chord.size is not None and not chord.done:
        counted = chord.size - sum(leaves.values())
    claim = chord.claim
    return ChordView(
        group_id=group_id_of(found.key),
        size=chord.size,
        counted=counted,
        added=len(chord.added),
        added_pending=chord.added_pending,
        failed_parts=failed,
        header_done=chord.header_done,
        done=chord.done,
        claim_holder=claim.token if claim else None,
        lease_until=claim.lease_until if claim else None,
        created=found.created,
        age_seconds=(now - found.created).total_seconds() if found.created else None,
        expires_at=chord.expires_at,
        waiting_for=waiting_for(found, counted, counters is not None, now),
    )


def waiting_for(found: Inspected, counted: int | None, counters_read: bool, now: dt.datetime) -> str:
    chord = found.chord
    if chord.done:
        return "nothing: ended (callback published, or its errbacks called)"
    if chord.problem:
        return f"nothing it can: the document is unusable ({chord.problem}); the next part to return fails it"
    if not chord.header_done:
        if counted is not None and chord.size is not None:
            return f"{chord.size - counted} of {chord.size} header parts to return"
        if counters_read:
            return "header parts to return, but its counters are gone (deleted by hand?): it cannot complete"
        return "header parts to return"
    if chord.added_pending > 0:
        return f"{chord.added_pending} task(s) added with add_to_chord to return"
    claim = chord.claim
    if claim is not None and claim.lease_until > now:
        return f"its callback: claimed by {claim.token}, gathering and publishing (lease until {claim.lease_until:%H:%M:%S} UTC)"
    if claim is not None:
        return (
            f"a part to return again: complete, but its claim's holder stopped before publishing "
            f"(lease ran out at {claim.lease_until:%H:%M:%S} UTC); a redelivered part takes it over"
        )
    return "a part to return again: complete, its callback not claimed (released after a failure)"


def minutes(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if number < 0:
        raise argparse.ArgumentTypeError(E_STUCK.format(value=value))
    return number


def parser() -> argparse.ArgumentParser:
    backend = reading.backend_arguments("gcs://BUCKET[/PREFIX][?firestore_database=...]: whose chords")
    parser = argparse.ArgumentParser(
        prog="celery-gcs chords",
        description="Chords in Firestore: which are open or stuck, and what each waits for. Reads only.",
        parents=[backend],
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[backend], help="chords, oldest first")
    listing.add_argument("--open", action="store_true", help="only chords not ended")
    listing.add_argument(
        "--stuck", type=minutes, metavar="MINUTES", help="only open chords applied at least this many minutes ago"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = actions.add_parser("show", parents=[backend], help="one chord, by its group id (result.parent.id)")
    show.add_argument("group_id")
    return parser


def main(argv: Sequence[str]) -> int:
    return reading.run(parser(), argv, reading.FIRESTORE, act)


def act(command: reading.Command, config: settings.Settings) -> int:
    args, out, err = command.args, command.out, command.err
    store = ChordStore(config)
    if args.action == "show":
        return show(store, config, args.group_id, out, err)
    found = chords(store, open_only=args.open or args.stuck is not None, stuck=args.stuck)
    if not found and not args.json:  # said; an empty table would read as a broken listing
        which = (
            f"open chords applied {args.stuck:.10g} minutes ago or earlier" if args.stuck is not None
            else "open chords" if args.open else "chords"
        )  # fmt: skip
        err.print(
            NONE_LISTED.format(which=which, collection=config.firestore_collection, database=config.firestore_database),
            highlight=False,
        )
        return 0
    return print_list(found, out, args.json)


def chords(store: ChordStore, *, open_only: bool, stuck: float | None) -> list[ChordView]:
    views = []
    for found in store.inspect_all(open_only=open_only):
        if found.chord.done:
            views.append(view(found, None, None))
            continue
        candidate = view(found, None, None)
        if stuck is not None and (candidate.age_seconds is None or candidate.age_seconds < stuck * 60):
            continue
        views.append(view(found, store.counters(found.key), None))
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(views, key=lambda v: v.created or oldest)


def print_list(views: Sequence[ChordView], out: Console, as_json: bool) -> int:
    if as_json:
        for item in views:
            out.file.write(json.dumps(item.row()) + "\n")
        return 0
    if not out.is_terminal:  # piped: every id whole, one chord a line, for `chords show`
        out = Console(file=out.file, width=sys.maxsize >> 32, soft_wrap=True, color_system=None)
    table = Table("group id", "state", "parts", "age", "waiting for", box=None)
    for item in views:
        parts = f"{item.counted}/{item.size}" if item.counted is not None else f"{item.size}"
        age = f"{item.age_seconds / 60:.1f} min" if item.age_seconds is not None else "?"
        table.add_row(escape(item.group_id), item.state, parts, age, escape(item.waiting_for))
    out.print(table)
    return 0


def show(store: ChordStore, config: settings.Settings, group_id: str, out: Console, err: Console) -> int:
    key = conventions.CHORD_KEY_PREFIX + encode_id(group_id)
    found = store.inspect(key)
    if found is None:
        err.print(
            E_NO_CHORD.format(
                group_id=group_id, collection=config.firestore_collection, database=config.firestore_database
            ),
            highlight=False,
        )
        return 1
    counters = None if found.chord.done else store.counters(key)
    out.file.write(json.dumps(view(found, counters, store.failed_parts(key)).row(), indent=2) + "\n")
    return 0
