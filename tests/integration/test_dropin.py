"""Drop-in: results written by Celery's built-in gs:// backend read with ours, and back."""

from __future__ import annotations

import uuid

import pytest
from celery import Celery, states
from celery.backends.gcs import GCSBackendBase
from celery.result import AsyncResult, GroupResult

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
def builtin(stack, prefix: str) -> GCSBackendBase:
    """Celery's own GCS backend (its storage half: the Firestore half calls the admin API at start)."""
    app = Celery("builtin", set_as_current=False)
    app.conf.update(gcs_bucket=stack.bucket, gcs_project="celery-gcs-local", gcs_base_path=prefix)
    return GCSBackendBase(app=app)


@pytest.fixture
def ours(make_app, prefix: str) -> Celery:
    # The built-in backend's own settings names, in app.conf, as a drop-in user would have them.
    return make_app("gcs://", gcs_bucket="celery-results", gcs_base_path=prefix, gcs_project="celery-gcs-local")


@pytest.fixture
def ours_by_url(make_app, stack, prefix: str) -> Celery:
    return make_app(f"gcs://{stack.bucket}/{prefix}?gcs_project=celery-gcs-local")


def test_results_written_by_the_builtin_backend_are_read_by_ours(builtin, ours_by_url) -> None:
    task_id = str(uuid.uuid4())
    builtin.store_result(task_id, {"from": "builtin"}, states.SUCCESS)
    builtin.mark_as_failure("failed-" + task_id, KeyError("k"))
    assert AsyncResult(task_id, app=ours_by_url).get(timeout=5) == {"from": "builtin"}
    failed = AsyncResult("failed-" + task_id, app=ours_by_url)
    assert failed.state == states.FAILURE and isinstance(failed.result, KeyError)


def test_groups_saved_by_the_builtin_backend_restore_with_ours(builtin, ours_by_url) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for n, task_id in enumerate(ids):
        builtin.store_result(task_id, n, states.SUCCESS)
    group = GroupResult(str(uuid.uuid4()), [AsyncResult(i, backend=builtin) for i in ids])
    builtin.save_group(group.id, group)
    restored = GroupResult.restore(group.id, app=ours_by_url)
    assert [r.id for r in restored.results] == ids
    assert restored.join_native(timeout=5) == [0, 1, 2]


def test_results_written_by_ours_are_read_by_the_builtin_backend(builtin, ours) -> None:
    task_id = str(uuid.uuid4())
    ours.backend.store_result(task_id, [1, 2, 3], states.SUCCESS)
    assert builtin.get_task_meta(task_id)["result"] == [1, 2, 3]


def test_the_builtin_settings_names_configure_ours(ours, prefix: str) -> None:
    settings = ours.backend.settings
    assert (settings.bucket, settings.base_path, settings.project) == ("celery-results", prefix, "celery-gcs-local")
