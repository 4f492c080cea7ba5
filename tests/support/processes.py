"""Processes the tests look for: by a marker in their environment."""

from __future__ import annotations

import os

import psutil


def with_env(name: str, value: str) -> list[psutil.Process]:
    """Running (not zombie) processes of this user whose environment has ``name=value``."""
    found = []
    for process in psutil.process_iter():
        try:
            mine = process.pid != os.getpid() and process.status() != psutil.STATUS_ZOMBIE
            if mine and process.environ().get(name) == value:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
