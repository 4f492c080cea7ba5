"""A fake service on a free loopback port, started and stopped by a test or by ``with``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Self


class LoopbackService:
    """What the fakes share: a port, a ``host`` for the emulator variables, ``start``/``stop``.

    A subclass calls ``listen`` once it is bound, with its port and how to serve and to close.
    """

    #: What precedes ``127.0.0.1:PORT`` in ``host``: ``http://`` for an HTTP service, nothing for gRPC.
    scheme = ""

    def listen(
        self, port: int, *, serve: Callable[[], object], close: Callable[[], object]
    ) -> None:
        self.port = port
        self._serve = serve
        self._close = close

    @property
    def host(self) -> str:
        """Where clients reach it, as ``STORAGE_EMULATOR_HOST`` or ``FIRESTORE_EMULATOR_HOST`` take it."""
        return f"{self.scheme}127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._serve()
        return self

    def stop(self) -> None:
        self._close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
