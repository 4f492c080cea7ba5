"""Values a chord's callback received that could not be stored: kept, and stored later, never replaced.

A chord's holder publishes the callback with its own value from memory, and
stores that value only then (chords.py says why in that order). When that
store fails, the value is kept here, in this process, and:

* Celery's next record of the task (its retry under
  ``result_backend_always_retry``, or its ``mark_as_failure`` once it gives
  up) stores it instead of the outcome it brings; failing again, it is kept;
* a thread of this process tries again in the background, waiting longer each
  time (up to a minute), until it lands or the value has expired.

Readers read ``PENDING`` meanwhile, never an outcome the callback did not get.
Lost only with the process (a worker stopped or a child recycled during the
outage), which is logged when the value is first kept.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from .perprocess import PerProcess
from .stored_results import EncodedState

log = logging.getLogger(__name__)

#: Values kept at most per process; beyond, the oldest is dropped (logged).
KEPT_AT_MOST = 10_000
#: The background retry's first wait and its longest, in seconds.
FIRST_WAIT, LONGEST_WAIT = 1.0, 60.0


@dataclass
class _Kept:
    values: OrderedDict[str, EncodedState] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    retrying: bool = False


class Unstored:
    """Task id -> the state its chord's callback received, not stored yet; one set per process."""

    def __init__(self, write: Callable[[EncodedState], None]) -> None:
        self._write = write
        self._kept: PerProcess[_Kept] = PerProcess(_Kept)

    def keep(self, task_id: str, encoded: EncodedState, error: BaseException) -> None:
        """``encoded`` went out with a callback and storing it failed with ``error``: store it later."""
        kept = self._kept.get()
        with kept.lock:
            kept.values[task_id] = encoded
            kept.values.move_to_end(task_id)
            while len(kept.values) > KEPT_AT_MOST:
                dropped, _ = kept.values.popitem(last=False)
                log.error("Chord part %s: its value went out with its callback, never stored (too many kept)", dropped)
            start, kept.retrying = not kept.retrying, True
        log.error(
            "Chord part %s: its %s went out with its chord's callback but could not be stored (%s); "
            "readers read PENDING until this process stores it (retried in the background, and when "
            "Celery records the task again); lost if the process ends first",
            task_id, encoded.state, error,
        )  # fmt: skip
        if start:
            threading.Thread(target=self._retry, args=(kept,), name="celery-gcs-unstored", daemon=True).start()

    def store(self, task_id: str) -> bool:
        """Store the value kept for ``task_id``, if any (True); raises if that fails, and keeps it."""
        kept = self._kept.get()
        with kept.lock:
            encoded = kept.values.get(task_id)
        if encoded is None:
            return False
        self._write(encoded)  # raises: still kept, for the next record or the background retry
        self._forget(kept, task_id, encoded)
        return True

    def _retry(self, kept: _Kept) -> None:
        wait = FIRST_WAIT
        while True:
            time.sleep(wait)
            wait = min(wait * 2, LONGEST_WAIT)
            with kept.lock:
                pending = list(kept.values.items())
                if not pending:
                    kept.retrying = False
                    return
            for task_id, encoded in pending:
                if encoded.expires_at is not None and encoded.expires_at <= dt.datetime.now(dt.UTC):
                    log.error("Chord part %s: its value went out with its callback and expired unstored", task_id)
                    self._forget(kept, task_id, encoded)
                    continue
                try:
                    self._write(encoded)
                except Exception as exc:  # noqa: BLE001 (tried again after the next wait)
                    log.warning("Chord part %s: its value still cannot be stored (%s)", task_id, exc)
                    continue
                log.warning("Chord part %s: the value its callback received is stored at last", task_id)
                self._forget(kept, task_id, encoded)

    @staticmethod
    def _forget(kept: _Kept, task_id: str, encoded: EncodedState) -> None:
        with kept.lock:
            if kept.values.get(task_id) is encoded:
                del kept.values[task_id]
