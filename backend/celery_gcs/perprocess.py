"""A lazily built value that is rebuilt in each process.

Google's clients hold sockets and threads that must not cross a fork: the
prefork pool forks children from a parent that may already have used them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """``get()`` returns this process's value, building it on first use."""

    def __init__(self, factory: Callable[[], T], close: Callable[[T], None] | None = None) -> None:
        self._factory = factory
        self._close = close
        self._lock = threading.Lock()
        self._value: T | None = None
        self._pid = 0

    def get(self) -> T:
        pid = os.getpid()
        if self._pid != pid:
            # The parent's lock may have been held by a thread that does not exist here.
            self._lock = threading.Lock()
        if self._pid != pid or self._value is None:
            with self._lock:
                if self._pid != pid or self._value is None:
                    # A value inherited from the parent is dropped, never closed:
                    # closing it here would close the parent's sockets too.
                    self._value = self._factory()
                    self._pid = pid
        return self._value

    def clear(self) -> None:
        """Close and forget this process's value, if it has one."""
        with self._lock:
            value, self._value = self._value, None
            if value is not None and self._pid == os.getpid() and self._close:
                self._close(value)
