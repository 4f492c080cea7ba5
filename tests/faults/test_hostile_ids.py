"""Task and group ids crafted to leave the key prefix or break object and document names.

``tests/integration/test_backend.py`` stores single results under such ids;
here they are a chord's header tasks and its group, which also name Firestore
documents, run by a real worker.
"""

from __future__ import annotations

import pytest
from celery import chord, group
from celery_gcs.keys import part_document_id

from ..support import gcs, tasks
from ..support.chords import callback_runs, ended_only, settle, sig

HOSTILE = [
    ".", "..", "../../outside", "a/b", "/", "__x__", "__", "____", "__.__", "ctl\x01\n\r", "sp ace", "ü",
    "%hash-abc", "%2E", "%5F_x__", "x" * 2000,
]  # fmt: skip


def test_every_hostile_id_gets_its_own_legal_part_document_id() -> None:
    ids = [part_document_id(task_id) for task_id in HOSTILE]
    assert len(set(ids)) == len(HOSTILE)  # no two tasks share a part document
    for doc_id in ids:
        assert "/" not in doc_id and doc_id not in (".", "..") and len(doc_id.encode()) <= 1500
        assert not (doc_id.startswith("__") and doc_id.endswith("__")), doc_id  # reserved by Firestore


@pytest.mark.usefixtures("stack")
def test_a_chord_of_hostile_ids_completes_once_under_its_prefix(app, start_worker, stack, firestore_docs) -> None:
    start_worker()
    canvas = chord([], sig(app, tasks.collect))
    # chord() drops a header group's options: its id goes on the group it runs.
    canvas.tasks = group(sig(app, tasks.echo, n, task_id=task_id) for n, task_id in enumerate(HOSTILE))
    canvas.tasks.set(task_id="../../group/__x__")
    result = canvas()
    assert result.parent.id == "../../group/__x__"
    assert [part.id for part in result.parent.results] == HOSTILE
    assert result.get(timeout=60) == list(range(len(HOSTILE)))
    settle()
    assert callback_runs(app, result) == 1
    assert ended_only(firestore_docs())
    prefix = app.backend.settings.base_path + "/"
    names = [blob.name for blob in gcs.client().list_blobs(stack.bucket)]
    # The parts, the callback, the record that the callback went out (the GroupResult is deleted as it ends).
    assert len(names) == len(HOSTILE) + 2
    for name in names:
        assert name.startswith(prefix) and "/" not in name[len(prefix) :] and len(name.encode()) <= 1024
