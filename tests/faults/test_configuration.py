"""Configuration that points at the wrong place: each is a clear error naming it.

A missing Firestore database, a wrong project, a bucket or database the
worker's identity may not use.

The Firestore emulator cannot say "no such database" or "permission denied"
(it creates whatever it is asked for), so those answers come from a gRPC
server that replies as Cloud Firestore does (``tests/support/fake_firestore.py``); GCS's 403
comes from the proxy, with the service's message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import chord, states
from celery.app.task import Context
from celery_gcs import AccessDenied, BucketNotFound, ConfigurationError, DatabaseNotFound
from celery_gcs.local import processes
from celery_gcs.settings import parse
from celery_gcs.stores.chord_store import ChordStore, Settle
from celery_gcs.stores.chord_tree import Node
from google.api_core import exceptions as api
from google.cloud import firestore

from ..support import tasks
from ..support.chords import sig
from ..support.factories import made_then_undone
from ..support.fake_firestore import (
    MISSING_DATABASE,
    NO_DOCUMENT,
    PERMISSION_DENIED,
    PROJECT_WITHOUT_DATABASE,
    Answer,
    FakeFirestore,
    answer,
)

pytestmark = pytest.mark.usefixtures("stack")

PROJECT = "team-prod-1"


@pytest.fixture
def refusing_firestore(monkeypatch) -> Iterator[Any]:
    """Point Firestore clients made from now on at a server that refuses every call."""

    def refusing(situation: Answer, **names: str) -> FakeFirestore:
        server = FakeFirestore(refusal=answer(situation, **names))
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", server.host)
        return server

    yield from made_then_undone(refusing, FakeFirestore.stop, start=FakeFirestore.start)


def _store(stack: Any, query: str) -> ChordStore:
    return ChordStore(parse(f"gcs://{stack.bucket}?{query}", {}))


def _every_chord_call(store: ChordStore) -> dict[str, Any]:
    """Run each kind of Firestore call the chord code makes; what each raised."""
    key = f"chord-unlock-{uuid.uuid4()}"
    leaf = Node(0, 0, 1)
    calls = {
        "create": lambda: store.create(key, 1, 1, {leaf: 1}, None),
        "count": lambda: store.count(key, "t1", leaf, None),
        "read": lambda: store.read(key),
        "settle": lambda: store.settle(key, Settle("t", 10, top=leaf)),
        "end": lambda: store.end(key, "t"),
        "clean_up": lambda: store.clean_up(key, ["t1"], [leaf]),
    }
    raised = {}
    for name, call in calls.items():
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - collected, asserted by the caller
            raised[name] = exc
    return raised


def test_the_emulator_creates_any_database_in_any_project(stack) -> None:
    """Why the refusing server exists: the emulator never reports a missing database."""
    client = firestore.Client(project="no-such-project", database="no-such-database")
    client.collection("c").document("d").set({"x": 1})
    assert client.collection("c").document("d").get().to_dict() == {"x": 1}


@pytest.mark.parametrize(
    ("situation", "query", "database", "project"),
    [
        (MISSING_DATABASE, f"firestore_database=chords-db&firestore_project={PROJECT}", "chords-db", PROJECT),
        (PROJECT_WITHOUT_DATABASE, f"firestore_project={PROJECT}", "(default)", PROJECT),
        (PROJECT_WITHOUT_DATABASE, "firestore_project=typo-project", "(default)", "typo-project"),
    ],
    ids=["named-database", "default-database", "wrong-project"],
)
def test_a_missing_firestore_database_is_a_clear_error_on_every_chord_call(
    stack, refusing_firestore, situation, query: str, database: str, project: str
) -> None:
    server = refusing_firestore(situation, database=database, project=project)
    raised = _every_chord_call(_store(stack, query))
    assert set(raised) == {"create", "count", "read", "settle", "end", "clean_up"}
    for name, exc in raised.items():
        assert isinstance(exc, DatabaseNotFound) and isinstance(exc, ConfigurationError), name
        message = str(exc)
        assert f"Firestore database {database!r} does not exist in project {project}" in message, name
        assert "firestore_database / firestore_project" in message, name
        assert isinstance(exc.__cause__, api.NotFound), name
    assert len(server.calls) == 6  # each refused once, not retried


def test_a_firestore_project_or_database_the_identity_may_not_use_is_a_clear_error(
    stack, refusing_firestore
) -> None:
    server = refusing_firestore(PERMISSION_DENIED)
    raised = _every_chord_call(_store(stack, f"firestore_project={PROJECT}&firestore_database=chords-db"))
    assert len(raised) == 6
    for name, exc in raised.items():
        assert isinstance(exc, AccessDenied), name
        message = str(exc)
        assert f"may not use Firestore database 'chords-db' in project {PROJECT}" in message, name
        assert "Missing or insufficient permissions" in message and "roles/datastore.user" in message, name
    assert len(server.calls) == 6


def test_a_missing_document_is_not_taken_for_a_missing_database(stack, refusing_firestore) -> None:
    refusing_firestore(NO_DOCUMENT, project=PROJECT, database="(default)")
    with pytest.raises(api.NotFound) as caught:
        _store(stack, f"firestore_project={PROJECT}").add("chord-unlock-x", "t1", "t1", None)
    assert not isinstance(caught.value, DatabaseNotFound)


def test_applying_a_chord_without_its_database_fails_at_once_and_other_results_are_kept(
    make_app, stack, refusing_firestore
) -> None:
    app = make_app()
    app.backend.store_result("kept", "fine", states.SUCCESS)
    refusing_firestore(MISSING_DATABASE, database="(default)", project=stack.local_stack.project)
    with pytest.raises(DatabaseNotFound):
        chord([sig(app, tasks.add, 1, 1), sig(app, tasks.add, 2, 2)])(sig(app, tasks.collect))
    # A header task that runs anyway cannot be counted: its store is the same clear error.
    part = Context(id=str(uuid.uuid4()), group=str(uuid.uuid4()), group_index=0, chord=dict(sig(app, tasks.collect)))
    with pytest.raises(DatabaseNotFound):
        app.backend.store_result(part.id, 2, states.SUCCESS, request=part)
    app.backend.store_result("also-kept", "fine too", states.SUCCESS)
    reader = make_app().backend
    assert [reader.get_task_meta(t)["result"] for t in ("kept", "also-kept")] == ["fine", "fine too"]


GCS_DENIED = (
    "celery-worker@team-prod-1.iam.gserviceaccount.com does not have storage.objects.{verb} access "
    "to the Google Cloud Storage object. Permission 'storage.objects.{verb}' denied on resource "
    "(or it may not exist)."
)


@pytest.mark.parametrize(
    ("action", "verb", "kind"),
    [("write", "create", "object.write"), ("read", "get", "object.read"), ("delete", "delete", "object.delete")],
)
def test_a_bucket_the_identity_may_not_use_is_a_clear_error(make_app, stack, action, verb, kind) -> None:
    backend = make_app().backend
    backend.store_result("existing", 1, states.SUCCESS)
    stack.gcs.faults.only = frozenset({kind})
    stack.gcs.faults.error_rate = 1.0
    stack.gcs.faults.statuses = (403,)
    stack.gcs.faults.error_message = GCS_DENIED.format(verb=verb)
    stack.gcs.reset_counts()
    operation = {
        "write": lambda: backend.store_result("denied", 1, states.SUCCESS),
        "read": lambda: backend.get_task_meta("existing", cache=False),
        "delete": lambda: backend.forget("existing"),
    }[action]
    with pytest.raises(AccessDenied) as caught:
        operation()
    message = str(caught.value)
    assert f"may not {action} gs://{stack.bucket}/{backend.settings.base_path}/celery-task-meta-" in message
    assert f"storage.objects.{verb}" in message and "roles/storage.objectUser" in message
    assert isinstance(caught.value, ConfigurationError)
    assert stack.gcs.injected_snapshot() == {"status.403": 1}  # refused once, not retried


def test_a_wrong_gcs_project_does_not_matter_to_results(make_app, stack) -> None:
    """Bucket names are global: object reads and writes never name a project, so a wrong
    ``gcs_project`` changes nothing but the project named in a missing bucket's error."""
    app = make_app(gcs_project="not-the-right-project")
    app.backend.store_result("t-proj", "stored", states.SUCCESS)
    assert make_app().backend.get_task_meta("t-proj")["result"] == "stored"


@pytest.mark.parametrize("key", ["result_expires", "result_failure_expires"])
def test_a_negative_result_expires_is_refused_like_a_negative_gcs_ttl(make_app, key: str) -> None:
    """Accepted, it would write every result already expired: each would read as PENDING."""
    with pytest.raises(ConfigurationError) as caught:
        make_app(**{key: -1}).backend  # noqa: B018 (building the backend is the act)
    assert f"app.conf.{key} = -1 is invalid: it is negative" in str(caught.value)
    with pytest.raises(ConfigurationError) as ttl:
        make_app("gcs://bucket?gcs_ttl=-1").backend  # noqa: B018
    assert "gcs_ttl (from result_backend URL) must be at least 0" in str(ttl.value)


def test_a_missing_bucket_names_the_project_from_the_environment(make_app, stack) -> None:
    """GOOGLE_CLOUD_PROJECT (exported by `dev up`, set by the stack fixture) is the project
    the client used; the error says so instead of "project not set"."""
    backend = make_app(f"gcs://no-such-bucket-{uuid.uuid4().hex[:8]}").backend
    with pytest.raises(BucketNotFound) as caught:
        backend.store_result("t", 1, states.SUCCESS)
    message = str(caught.value)
    assert f"(project {stack.local_stack.project}, from GOOGLE_CLOUD_PROJECT)" in message
    assert "not set" not in message


def test_a_missing_bucket_names_a_configured_project_and_where_it_was_set(make_app) -> None:
    backend = make_app(f"gcs://no-such-bucket-{uuid.uuid4().hex[:8]}", gcs_project="team-prod-1").backend
    with pytest.raises(BucketNotFound) as caught:
        backend.get_task_meta("t")
    assert "(project team-prod-1, from app.conf.gcs_project)" in str(caught.value)


#: Variables that name emulators or credentials; the process below has none of them.
_POINTING_ELSEWHERE = (
    "STORAGE_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "CELERY_RESULT_BACKEND",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "CLOUDSDK_CONFIG",
)
#: Reads a result, then a chord document, in a process of its own; prints what each raised.
_NO_CREDENTIALS_SCRIPT = """
import json
from celery import Celery
from celery_gcs.stores.chord_store import ChordStore
app = Celery("no-credentials", set_as_current=False)
app.conf.result_backend = "gcs://some-results-bucket"
raised = {}
for name, call in (
    ("gcs", lambda: app.backend.get_task_meta("t")),
    ("firestore", lambda: ChordStore(app.backend.settings).read("chord-unlock-t")),
):
    try:
        call()
    except Exception as exc:
        raised[name] = [type(exc).__module__ + "." + type(exc).__name__, str(exc), type(exc.__cause__).__name__]
print(json.dumps(raised))
"""


@pytest.mark.parametrize("credentials_file", [None, "/nonexistent/key.json"], ids=["no-adc", "adc-path-wrong"])
def test_no_emulators_and_no_credentials_is_a_configuration_error_naming_both_fixes(
    tmp_path, credentials_file: str | None
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _POINTING_ELSEWHERE
    }
    # No ADC file under HOME, and a metadata server address where nothing listens.
    closed = f"127.0.0.1:{processes.free_port()}"
    env.update(HOME=str(home), GCE_METADATA_HOST=closed, GCE_METADATA_IP=closed)
    if credentials_file:
        env["GOOGLE_APPLICATION_CREDENTIALS"] = credentials_file
    done = subprocess.run(
        [sys.executable, "-c", _NO_CREDENTIALS_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    raised = json.loads(done.stdout)
    assert set(raised) == {"gcs", "firestore"}
    for service, (kind, message, cause) in raised.items():
        assert kind == "celery_gcs.errors.ConfigurationError", (service, kind, message)
        assert cause == "DefaultCredentialsError", service
        assert "gcloud auth application-default login" in message, service
        assert "STORAGE_EMULATOR_HOST and FIRESTORE_EMULATOR_HOST" in message, service
        assert 'eval "$(celery-gcs dev up)"' in message, service
        if credentials_file:
            assert credentials_file in message, service  # google-auth's reason is kept
