"""Factory fixtures: hand a test a maker, and undo everything it made once the test is over."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def made_then_undone(
    make: Callable[P, T], undo: Callable[[T], object], *, start: Callable[[T], object] | None = None
) -> Iterator[Callable[P, T]]:
    """Yield ``make``, keeping what it returns; afterwards ``undo`` each of those, oldest first.

    ``start``, if given, runs on each thing once it is kept, so that a thing
    whose start fails or is interrupted is undone all the same. A fixture hands
    the maker on with ``yield from made_then_undone(...)``.
    """
    made: list[T] = []

    def keep(*args: P.args, **kwargs: P.kwargs) -> T:
        thing = make(*args, **kwargs)
        made.append(thing)
        if start is not None:
            start(thing)
        return thing

    yield keep
    for thing in made:
        undo(thing)
