"""perprocess.py: one value per process, built on first use, rebuilt after a fork and never closed there."""

from __future__ import annotations

import os

from celery_gcs.perprocess import PerProcess


def test_the_value_is_built_once_per_process() -> None:
    built: list[int] = []
    holder = PerProcess(lambda: built.append(os.getpid()) or len(built))
    assert holder.get() == holder.get() == 1
    assert built == [os.getpid()]


def test_a_forked_child_builds_its_own_and_leaves_the_parents_open() -> None:
    closed: list[int] = []
    holder = PerProcess(lambda: {"pid": os.getpid()}, lambda value: closed.append(value["pid"]))
    parents = holder.get()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: a fresh value, and clearing it closes only its own
        value = holder.get()
        holder.clear()
        ok = value is not parents and value["pid"] == os.getpid() and closed == [os.getpid()]
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(child, 0)
    assert answer == b"1"
    assert holder.get() is parents and closed == []


def test_clear_closes_this_process_value_and_the_next_get_builds_anew() -> None:
    closed: list[object] = []
    holder = PerProcess(object, closed.append)
    first = holder.get()
    holder.clear()
    assert closed == [first]
    assert holder.get() is not first
