"""pytest plugin for runs on the stock gcp-storage-emulator: each test starts with an empty bucket.

The stock emulator re-serialises the metadata of every stored object after
each write, so a write's cost grows with the objects stored (measured here: 6
ms at 500 objects, 81 ms at 3,000; GCS's does not grow). By the time
test_canvas.py reaches ``test_large_header`` some 2,000 results are stored, the
1,000-part chord cannot finish within the suite's 60 s, and each rerun adds
1,000 more. Wiping the emulator before each test (keeping the bucket) keeps a
test's writes as cheap as they are at its start; tests share no results.
The project's emulator wrapper does not persist, so its runs do without this.
"""

from __future__ import annotations

import os
import urllib.request

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before the test's fixtures: the session worker's ping, on the first test, is kept.
    host = os.environ["STORAGE_EMULATOR_HOST"]
    with urllib.request.urlopen(f"{host}/wipe?keep-buckets=true", timeout=60) as response:
        response.read()
