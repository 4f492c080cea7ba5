"""Where a chord's time goes: every call to Google a worker makes, with its wall-clock start and end.

A worker started with ``CELERY_BENCH_TIMELINE=DIR`` registers ``Recorder``
on ``celery_gcs.observe`` (``bench.tasks`` does): each pool process appends
one line per GCS request or Firestore RPC to ``DIR/<pid>.tsv``; the chord
callback notes when it starts. ``phases`` reads them back as the phases of
one chord, in seconds from when the client sent it:

* **parts**: the header's counts (Firestore commits) and stores (GCS PUTs),
  from the first to the last;
* **settle**: the transaction(s) that claim the callback, after the last count;
* **gather**: the callback's holder reading the GroupResult and every part's
  value (GCS reads);
* **publish**: from the gather's end to the callback task starting in a worker
  (the renewal, the publish, the broker, the consumer);
* **callback**: from its start to its result stored.

``first_calls``: each pool process's first call of a kind against the median
of the rest, the cost a fresh process (or a worker KEDA starts from zero) pays.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

#: The environment variable naming the directory a worker records its calls in.
ENV = "CELERY_BENCH_TIMELINE"
#: The kind recorded when a chord callback starts.
CALLBACK_STARTED = "callback.started"


class Recorder:
    """A ``celery_gcs.observe`` observer writing each call's kind, start and end (time.time())."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._file: tuple[int, Any] | None = None
        self._lock = threading.Lock()  # the gather's pool threads record too

    def _write(self, line: str) -> None:
        with self._lock:
            if self._file is None or self._file[0] != os.getpid():
                self._file = (os.getpid(), open(self.directory / f"{os.getpid()}.tsv", "a", buffering=1))  # noqa: SIM115
            self._file[1].write(line)

    def start(self, kind: str) -> float:
        return time.time()

    def end(self, token: float, kind: str, outcome: str, seconds: float, error: BaseException | None) -> None:
        self._write(f"{kind}\t{token:.6f}\t{token + seconds:.6f}\t{outcome}\n")

    def event(self, name: str) -> None:
        now = time.time()
        self._write(f"{name}\t{now:.6f}\t{now:.6f}\tok\n")


def install_from_env() -> None:
    """Record this worker's calls if ``CELERY_BENCH_TIMELINE`` names a directory."""
    directory = os.environ.get(ENV)
    if directory:
        from celery_gcs import observe

        observe.add(Recorder(Path(directory)))


def read(directory: Path, since: float = 0.0) -> list[tuple[int, str, float, float]]:
    """Every call recorded that started at ``since`` or later: (pid, kind, start, end), in start order.

    The files stay (the workers hold them open): a chord's calls are those since it was sent.
    """
    found = []
    for path in directory.glob("*.tsv"):
        pid = int(path.stem)
        for line in path.read_text().splitlines():
            kind, start, end, _outcome = line.split("\t")
            if float(start) >= since:
                found.append((pid, kind, float(start), float(end)))
    return sorted(found, key=lambda call: call[2])


def phases(calls: list[tuple[int, str, float, float]], sent: float, done: float) -> dict[str, Any]:
    """The phases of the one chord ``calls`` hold (module docstring), in seconds from ``sent``."""
    started = [start for _pid, kind, start, _end in calls if kind == CALLBACK_STARTED]
    callback_at = started[0] if started else done
    reads = [(pid, start, end) for pid, kind, start, end in calls if kind == "gcs.read" and end <= callback_at]
    holder_reads = [(start, end) for pid, start, end in reads if pid == _holder(reads)]
    gather = _span(holder_reads)
    # The parts were all counted before the gather began; the holder's later commits end the chord.
    cutoff = gather[0] if gather else callback_at
    counts = [(pid, start, end) for pid, kind, start, end in calls if kind == "firestore.commit" and end <= cutoff]
    writes = [(start, end) for _pid, kind, start, end in calls if kind == "gcs.write" and end <= callback_at]
    last_count = max((end for _pid, _start, end in counts), default=sent)
    settles = [
        (start, end) for _pid, kind, start, end in calls
        if kind == "firestore.transaction" and last_count <= end <= cutoff
    ]  # fmt: skip

    def at(span: tuple[float, float] | None) -> dict[str, float] | None:
        return None if span is None else {"from": round(span[0] - sent, 3), "to": round(span[1] - sent, 3)}

    return {
        "parts": at(_span([(s, e) for _p, s, e in counts] + writes)),
        "counts": len(counts),
        "stores": len(writes),
        "settle": at(_span(settles)),
        "gather": at(gather),
        "gather_reads": len(holder_reads),
        "gather_in_flight": _most_at_once(holder_reads),
        "publish": at((gather[1], callback_at)) if gather else None,
        "callback": at((callback_at, done)),
        "done": round(done - sent, 3),
    }


def first_calls(calls: list[tuple[int, str, float, float]], kinds: tuple[str, ...]) -> dict[str, Any]:
    """Per kind: the median of each process's first call, and of every later one, in ms."""
    found: dict[str, Any] = {}
    for kind in kinds:
        firsts, rest, seen = [], [], set()
        for pid, what, start, end in calls:
            if what != kind:
                continue
            (rest if pid in seen else firsts).append((end - start) * 1000)
            seen.add(pid)
        if firsts and rest:
            found[kind] = {
                "first_ms": round(statistics.median(firsts), 1),
                "later_ms": round(statistics.median(rest), 1),
                "processes": len(firsts),
            }
    return found


def _holder(reads: list[tuple[int, float, float]]) -> int | None:
    """The process that read the most: the callback's holder gathering."""
    by_pid: dict[int, int] = {}
    for pid, _start, _end in reads:
        by_pid[pid] = by_pid.get(pid, 0) + 1
    return max(by_pid, key=by_pid.__getitem__) if by_pid else None


def _span(spans: list[tuple[float, float]]) -> tuple[float, float] | None:
    return (min(s for s, _ in spans), max(e for _, e in spans)) if spans else None


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most calls in flight at one moment."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = now = 0
    for _moment, step in edges:
        now += step
        most = max(most, now)
    return most
