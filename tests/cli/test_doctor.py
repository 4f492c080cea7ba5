"""`celery-gcs doctor` against the emulators, and against fakes for what they cannot do.

The emulators serve the bucket checks (gcp-storage-emulator stores lifecycle and
uniform access as GCS does) and the Firestore query; fakes speaking the real
protocols stand in for a denied permission, a refused bucket look-up and the
Firestore admin API, which no emulator offers.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
from celery_gcs import conventions
from celery_gcs.cli import doctor as doctor_module
from celery_gcs.cli import main as cli
from celery_gcs.cli.doctor import WORKER_PERMISSIONS, Config, Doctor, Status, judge_lifecycle
from celery_gcs.local import processes, services
from celery_gcs.stores import admin, retry
from google.auth import impersonated_credentials
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore_admin_v1, storage

from ..support.fake_firestore import MISSING_DATABASE, PERMISSION_DENIED, FakeFirestore, answer
from ..support.fake_gcs import FakeGCS
from .conftest import clean_env, run_cli

PROJECT = services.PROJECT
HEALTHY = conventions.lifecycle_rules()  # Delete at daysSinceCustomTime 0, and at age 30 days
TtlState = firestore_admin_v1.Field.TtlConfig.State


@pytest.fixture
def doctor(stack: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run `celery-gcs doctor --json` in-process; returns (exit code, checks by name)."""

    def run(
        *args: str, gcs: str | None = None, firestore: str | None = None
    ) -> tuple[int, dict[str, dict]]:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs or stack.local_stack.gcs_host)
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore or stack.local_stack.firestore_host)
        capsys.readouterr()
        code = cli.main(["doctor", "--project", PROJECT, "--timeout", "3", "--json", *args])
        report = json.loads(capsys.readouterr().out)
        assert report["ok"] is (code == 0)
        return code, {check["name"]: check for check in report["checks"]}

    return run


@pytest.fixture
def doctor_on_firestore(doctor: Any, make_bucket: Any) -> Any:
    """Run the doctor on a healthy bucket and a ``FakeFirestore(**fake)`` as database "chords": (code, checks, the fake)."""

    def run(**fake: Any) -> tuple[int, dict[str, dict], FakeFirestore]:
        with FakeFirestore(**fake) as firestore:
            code, checks = doctor(
                "--bucket", make_bucket(lifecycle=HEALTHY), "--database", "chords", firestore=firestore.host
            )
        return code, checks, firestore

    return run


def statuses(checks: dict[str, dict]) -> dict[str, str]:
    return {name: check["status"] for name, check in checks.items()}


def test_a_healthy_setup_on_the_emulators_passes_and_says_what_it_could_not_check(
    stack: Any, make_bucket: Any
) -> None:
    bucket = make_bucket(lifecycle=HEALTHY, uniform=True)
    env = clean_env(
        STORAGE_EMULATOR_HOST=stack.local_stack.gcs_host,
        FIRESTORE_EMULATOR_HOST=stack.local_stack.firestore_host,
    )
    done = run_cli("doctor", "--bucket", bucket, "--project", PROJECT, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    by_name = {
        line.split()[1]: line
        for line in lines
        if line.split()[:1] in (["PASS"], ["FAIL"], ["SKIP"])
    }
    assert by_name["bucket"].startswith("PASS") and f"gs://{bucket} exists" in by_name["bucket"]
    assert (
        by_name["lifecycle"].startswith("PASS") and "daysSinceCustomTime 0" in by_name["lifecycle"]
    )
    assert by_name["uniform"].startswith("PASS")
    assert by_name["firestore"].startswith("PASS")
    # What the emulators cannot answer is said, and does not count as a failure.
    assert by_name["permissions"].startswith("SKIP")
    assert "not checked: the GCS emulator grants every permission" in by_name["permissions"]
    assert by_name["ttl"].startswith("SKIP")
    assert "not checked: the Firestore admin API is not available on the emulator" in by_name["ttl"]
    assert "4 passed, 0 failed, 2 not checked" in done.stdout


def test_a_missing_bucket_fails_with_the_command_that_creates_it(doctor: Any) -> None:
    code, checks = doctor("--bucket", "no-such-bucket-here")
    assert code == 1
    assert checks["bucket"]["status"] == "FAIL"
    assert "gs://no-such-bucket-here does not exist" in checks["bucket"]["detail"]
    # On the emulator, the fix goes to the emulator: gcloud would create the bucket on GCP.
    assert "gcloud" not in checks["bucket"]["fix"]
    assert f"{os.environ['STORAGE_EMULATOR_HOST']}/storage/v1/b?project={PROJECT}" in checks["bucket"]["fix"]
    assert statuses(checks) == {
        "bucket": "FAIL", "lifecycle": "SKIP", "uniform access": "SKIP", "permissions": "SKIP",
        "firestore": "PASS", "ttl policy": "SKIP",
    }  # fmt: skip


def test_a_bucket_without_a_lifecycle_rule_fails(doctor: Any, make_bucket: Any) -> None:
    code, checks = doctor("--bucket", make_bucket(lifecycle=None))
    assert code == 1
    lifecycle = checks["lifecycle"]
    assert lifecycle["status"] == "FAIL"
    assert "no lifecycle Delete rule" in lifecycle["detail"]
    assert '"daysSinceCustomTime":0' in lifecycle["fix"]  # the rule the backend's custom time needs
    assert checks["bucket"]["status"] == checks["uniform access"]["status"] == "PASS"


def test_an_age_rule_shorter_than_result_expires_fails(doctor: Any, make_bucket: Any) -> None:
    bucket = make_bucket(lifecycle=HEALTHY)
    # The same bucket is fine with Celery's one day...
    code, checks = doctor("--bucket", bucket)
    assert (code, checks["lifecycle"]["status"]) == (0, "PASS")
    # ...but its 30-day backstop would delete results an app keeps for 40 days.
    code, checks = doctor("--bucket", bucket, "--result-expires", str(40 * 86_400))
    assert code == 1
    assert checks["lifecycle"]["status"] == "FAIL"
    assert "age 30 days removes results before result_expires" in checks["lifecycle"]["detail"]
    assert "at least 40 days" in checks["lifecycle"]["fix"]
    # The fix, run as printed (on the emulator, its own API), makes the check pass.
    fix = checks["lifecycle"]["fix"].split("; ", 1)[1].split(" (on the emulator")[0]
    subprocess.run(fix, shell=True, check=True, capture_output=True, timeout=30)
    code, checks = doctor("--bucket", bucket, "--result-expires", str(40 * 86_400))
    assert (code, checks["lifecycle"]["status"]) == (0, "PASS"), checks["lifecycle"]


def test_an_age_rule_alone_long_enough_passes(doctor: Any, make_bucket: Any) -> None:
    bucket = make_bucket(lifecycle=[{"action": {"type": "Delete"}, "condition": {"age": 2}}])
    code, checks = doctor("--bucket", bucket, "--result-expires", "86400")
    assert (code, checks["lifecycle"]["status"]) == (0, "PASS")
    code, checks = doctor("--bucket", bucket, "--result-expires", str(3 * 86_400))
    assert (code, checks["lifecycle"]["status"]) == (1, "FAIL")


def test_uniform_access_off_fails(doctor: Any, make_bucket: Any) -> None:
    code, checks = doctor("--bucket", make_bucket(lifecycle=HEALTHY, uniform=False))
    assert code == 1
    assert checks["uniform access"]["status"] == "FAIL"
    assert "gcloud storage" not in checks["uniform access"]["fix"]  # it would change the bucket on GCP
    assert '"uniformBucketLevelAccess":{"enabled":true}' in checks["uniform access"]["fix"]
    assert [name for name, status in statuses(checks).items() if status == "FAIL"] == [
        "uniform access"
    ]


def test_an_unreachable_firestore_fails_and_skips_the_ttl_check(
    doctor: Any, make_bucket: Any
) -> None:
    closed = processes.free_port()
    code, checks = doctor(
        "--bucket", make_bucket(lifecycle=HEALTHY), firestore=f"127.0.0.1:{closed}"
    )
    assert code == 1
    assert checks["firestore"]["status"] == "FAIL"
    assert (
        f"cannot reach the Firestore emulator at 127.0.0.1:{closed}"
        in checks["firestore"]["detail"]
    )
    assert "FIRESTORE_EMULATOR_HOST" in checks["firestore"]["fix"]
    assert checks["ttl policy"] == {
        "name": "ttl policy", "status": "SKIP", "detail": "not checked: needs a reachable Firestore database", "fix": "",
    }  # fmt: skip
    assert checks["bucket"]["status"] == "PASS"


def test_an_unreachable_gcs_fails(doctor: Any) -> None:
    closed = processes.free_port()
    code, checks = doctor("--bucket", "celery-results", gcs=f"http://127.0.0.1:{closed}")
    assert code == 1
    assert checks["bucket"]["status"] == "FAIL"
    assert (
        f"cannot reach the GCS emulator at http://127.0.0.1:{closed}" in checks["bucket"]["detail"]
    )
    assert "STORAGE_EMULATOR_HOST" in checks["bucket"]["fix"]
    assert statuses(checks)["permissions"] == "SKIP"


def test_an_invalid_bucket_name_fails_without_a_request(doctor: Any) -> None:
    code, checks = doctor("--bucket", "Not_A_Bucket!")
    assert code == 1
    assert checks["bucket"]["status"] == "FAIL"
    assert "not a valid bucket name" in checks["bucket"]["detail"]


def test_missing_worker_permissions_fail_with_the_grant(doctor: Any) -> None:
    with FakeGCS("perm-bucket", granted=["storage.objects.get"]) as gcs:
        code, checks = doctor("--bucket", "perm-bucket", gcs=gcs.host)
    assert code == 1
    permissions = checks["permissions"]
    assert permissions["status"] == "FAIL"
    assert "lacks storage.objects.create, storage.objects.delete" in permissions["detail"]
    assert "add-iam-policy-binding gs://perm-bucket" in permissions["fix"]
    assert "roles/storage.objectUser" in permissions["fix"]
    # It asked about exactly what the worker needs.
    asked = [path for path in gcs.requests if "testPermissions" in path]
    assert len(asked) == 1 and all(permission in asked[0] for permission in WORKER_PERMISSIONS)


def test_permissions_pass_only_where_iam_is_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config(bucket="perm-bucket", project=PROJECT, timeout=3)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    with FakeGCS("perm-bucket", granted=list(WORKER_PERMISSIONS)) as gcs:
        client = admin.BucketReader(
            storage.Client(project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs.host}),
            timeout=3,
            retry=retry.policy(3),
        )
        on_gcs = Doctor(config, env={}).check_permissions(client)
        on_emulator = Doctor(config, env={"STORAGE_EMULATOR_HOST": gcs.host}).check_permissions(
            client
        )
    assert on_gcs.status is Status.PASS
    assert (
        "the caller holds storage.objects.create, storage.objects.get, storage.objects.delete"
        in on_gcs.detail
    )
    # An emulator grants whatever it is asked about: its yes means nothing.
    assert on_emulator.status is Status.SKIP


def test_a_bucket_the_caller_may_not_read_fails_but_permissions_are_still_asked(
    doctor: Any,
) -> None:
    with FakeGCS("locked-bucket", granted=[], bucket_status=403) as gcs:
        code, checks = doctor("--bucket", "locked-bucket", gcs=gcs.host)
    assert code == 1
    assert checks["bucket"]["status"] == "FAIL"
    assert "storage.buckets.get" in checks["bucket"]["detail"]
    assert statuses(checks)["lifecycle"] == statuses(checks)["uniform access"] == "SKIP"
    assert checks["permissions"]["status"] == "FAIL"


@pytest.mark.parametrize(
    ("ttl", "status", "expected"),
    [
        (firestore_admin_v1.Field.TtlConfig(state=TtlState.ACTIVE), "PASS", f"{conventions.FIRESTORE_PARTS_COLLECTION}.expires_at active"),
        (firestore_admin_v1.Field.TtlConfig(state=TtlState.CREATING), "PASS", "being applied"),
        (
            firestore_admin_v1.Field.TtlConfig(state=TtlState.NEEDS_REPAIR),
            "FAIL",
            "is NEEDS_REPAIR",
        ),
        (None, "FAIL", f"no TTL policy on {conventions.FIRESTORE_COLLECTION}.expires_at"),
    ],
    ids=["active", "creating", "needs-repair", "absent"],
)
def test_the_ttl_policy_is_read_from_the_admin_api(doctor_on_firestore: Any, ttl, status, expected) -> None:
    code, checks, firestore = doctor_on_firestore(ttl_config=ttl)
    assert checks["ttl policy"]["status"] == status
    assert expected in checks["ttl policy"]["detail"]
    assert code == (0 if status == "PASS" else 1)
    assert firestore.fields_asked == [
        f"projects/{PROJECT}/databases/chords/collectionGroups/{group}/fields/expires_at"
        for group in conventions.chord_collection_groups()
    ]
    if status == "FAIL":
        for group in conventions.chord_collection_groups():
            fix = f"gcloud firestore fields ttls update expires_at --collection-group={group} --enable-ttl --database=chords"
            assert checks["ttl policy"]["fix"].count(fix) == 1


def test_a_chord_subcollection_without_its_ttl_policy_fails_naming_it(doctor_on_firestore: Any) -> None:
    """The parts and counters of unfinished chords are deleted only by their own groups' policies."""
    active = firestore_admin_v1.Field.TtlConfig(state=TtlState.ACTIVE)
    code, checks, _ = doctor_on_firestore(ttl_config=active, without_ttl=(conventions.FIRESTORE_PARTS_COLLECTION,))
    assert code == 1 and checks["ttl policy"]["status"] == "FAIL"
    assert f"no TTL policy on {conventions.FIRESTORE_PARTS_COLLECTION}.expires_at" in checks["ttl policy"]["detail"]
    assert f"--collection-group={conventions.FIRESTORE_PARTS_COLLECTION}" in checks["ttl policy"]["fix"]
    assert conventions.FIRESTORE_COLLECTION + "." not in checks["ttl policy"]["detail"]


@pytest.mark.parametrize(
    ("error", "expected", "fix"),
    [
        (answer(MISSING_DATABASE, database="chords", project=PROJECT), "does not exist",
         "gcloud firestore databases create --database=chords"),
        (PERMISSION_DENIED, "may not read", "roles/datastore.user"),
    ],
    ids=["missing-database", "permission-denied"],
)  # fmt: skip
def test_firestore_errors_fail_with_their_fix(doctor_on_firestore: Any, error, expected, fix) -> None:
    code, checks, _ = doctor_on_firestore(refusal=error)
    assert code == 1
    assert checks["firestore"]["status"] == "FAIL"
    assert expected in checks["firestore"]["detail"]
    assert fix in checks["firestore"]["fix"]
    assert checks["ttl policy"]["status"] == "SKIP"


def test_without_credentials_or_emulators_every_check_says_so(tmp_path) -> None:
    env = clean_env(
        GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "no-such-key.json"),
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
        NO_GCE_CHECK="True",
    )
    done = run_cli(
        "doctor", "--bucket", "some-bucket", "--project", "p", "--json", env=env, timeout=120
    )
    assert done.returncode == 1, done.stderr
    checks = {check["name"]: check for check in json.loads(done.stdout)["checks"]}
    for name in ("bucket", "firestore"):
        assert checks[name]["status"] == "FAIL"
        assert "no Google credentials found" in checks[name]["detail"]
        assert "gcloud auth application-default login" in checks[name]["fix"]
    assert {
        checks[name]["status"]
        for name in ("lifecycle", "uniform access", "permissions", "ttl policy")
    } == {"SKIP"}


# -- the lifecycle judgement, rule by rule --------------------------------------------


def _delete(**condition: Any) -> dict[str, Any]:
    return {"action": {"type": "Delete"}, "condition": condition}


@pytest.mark.parametrize(
    ("rules", "expires", "status"),
    [
        ([_delete(daysSinceCustomTime=0)], 86_400, "PASS"),
        ([_delete(daysSinceCustomTime=3)], 86_400 * 365, "PASS"),  # custom time is the expiry itself
        ([_delete(age=1)], 86_400, "PASS"),
        ([_delete(age=1)], 86_401, "FAIL"),
        ([_delete(daysSinceCustomTime=0), _delete(age=7)], 8 * 86_400, "FAIL"),
        ([_delete(age=30)], 0, "FAIL"),  # results meant never to expire, deleted at 30 days
        ([_delete(daysSinceCustomTime=0)], 0, "PASS"),  # never expire: no custom time, never deleted
        ([], 86_400, "FAIL"),
        ([{"action": {"type": "SetStorageClass", "storageClass": "NEARLINE"}, "condition": {"age": 1}}], 86_400, "FAIL"),
        ([_delete(age=0, isLive=False), _delete(numNewerVersions=1)], 86_400, "FAIL"),  # noncurrent only
        ([_delete(age=1, isLive=False), _delete(daysSinceCustomTime=0)], 30 * 86_400, "PASS"),
    ],
)  # fmt: skip
def test_judge_lifecycle(rules, expires, status) -> None:
    assert judge_lifecycle(rules, expires, "b").status.value == status


def _rules_in(fix: str) -> list[dict[str, Any]]:
    return json.loads(fix.split("echo '", 1)[1].split("' >", 1)[0])["rule"]


@pytest.mark.parametrize("expires_days", [31, 40, 400])
def test_the_lifecycle_fix_for_a_short_age_rule_applies_a_rule_that_passes(expires_days: int) -> None:
    """It used to print the same 30-day rule again, failing the same way once applied."""
    expires = expires_days * 86_400
    check = judge_lifecycle(HEALTHY, expires, "b")
    assert check.status is Status.FAIL and "gcloud storage buckets update gs://b" in check.fix
    assert judge_lifecycle(_rules_in(check.fix), expires, "b").status is Status.PASS


@pytest.mark.parametrize(
    ("rules", "expires"),
    [
        ([], 86_400),
        ([], 0),  # results that never expire got the 30-day age rule, which then failed
        ([_delete(age=0, isLive=False)], 0),
        ([_delete(age=1)], 86_401),
        ([_delete(daysSinceCustomTime=0), _delete(age=7)], 8 * 86_400),
        ([_delete(age=30)], 0),
    ],
)  # fmt: skip
def test_every_lifecycle_fix_once_applied_passes(rules, expires) -> None:
    check = judge_lifecycle(rules, expires, "b")
    assert check.status is Status.FAIL
    assert judge_lifecycle(_rules_in(check.fix), expires, "b").status is Status.PASS, check.fix


def test_results_that_never_expire_but_an_age_rule_deletes_fail_with_the_rules_to_keep() -> None:
    check = judge_lifecycle(HEALTHY, 0, "b")
    assert check.status is Status.FAIL
    assert "result_expires is 0 (never), yet the Delete rule at age 30 days deletes" in check.detail
    assert _rules_in(check.fix) == [_delete(daysSinceCustomTime=0)]
    assert judge_lifecycle(_rules_in(check.fix), 0, "b").status is Status.PASS


# -- what to check: flags, the app, the environment ------------------------------------

APP_MODULE = """
import datetime
from celery import Celery

app = Celery("proj")
app.conf.result_backend = "gcs://{bucket}/results?firestore_database=chords&firestore_project=chords-proj"
app.conf.gcs_project = "{project}"
app.conf.result_expires = datetime.timedelta(days=40)
"""


def _emulator_env(stack: Any, **more: str) -> dict[str, str]:
    return clean_env(
        STORAGE_EMULATOR_HOST=stack.local_stack.gcs_host, FIRESTORE_EMULATOR_HOST=stack.local_stack.firestore_host, **more
    )


def _report(done: Any) -> dict[str, Any]:
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_with_dash_a_it_checks_what_the_app_configures(stack: Any, make_bucket: Any, tmp_path) -> None:
    bucket = make_bucket(lifecycle=HEALTHY)
    (tmp_path / "proj.py").write_text(APP_MODULE.format(bucket=bucket, project=PROJECT))
    env = _emulator_env(stack)
    report = _report(run_cli("doctor", "-A", "proj", "--timeout", "3", "--json", env=env, cwd=tmp_path))
    config = report["config"]
    assert (config["bucket"], config["project"]) == (bucket, PROJECT)
    assert (config["firestore_project"], config["database"]) == ("chords-proj", "chords")
    assert config["result_expires"] == 40 * 86_400
    checks = {check["name"]: check for check in report["checks"]}
    # The healthy bucket's 30-day age rule would delete this app's 40-day results.
    assert checks["lifecycle"]["status"] == "FAIL" and "at least 40 days" in checks["lifecycle"]["fix"]
    assert report["identity"] == "emulator (no credentials)"
    # Explicit flags still win.
    report = _report(
        run_cli("doctor", "-A", "proj", "--result-expires", "86400", "--project", "other", "--json",
                env=env, cwd=tmp_path)
    )  # fmt: skip
    assert report["config"]["result_expires"] == 86_400 and report["config"]["project"] == "other"
    assert report["config"]["firestore_project"] is None  # --project names both
    assert {check["name"]: check["status"] for check in report["checks"]}["lifecycle"] == "PASS"


def test_with_dash_a_it_says_that_an_exported_backend_overrides_the_apps(
    stack: Any, make_bucket: Any, tmp_path
) -> None:
    ours, exported = make_bucket(lifecycle=HEALTHY), make_bucket(lifecycle=HEALTHY)
    (tmp_path / "proj.py").write_text(APP_MODULE.format(bucket=ours, project=PROJECT))
    env = _emulator_env(stack, CELERY_RESULT_BACKEND=f"gcs://{exported}")
    report = _report(run_cli("doctor", "-A", "proj", "--timeout", "3", "--json", env=env, cwd=tmp_path))
    assert report["config"]["bucket"] == exported  # what Celery itself would use
    (note,) = report["config"]["notes"]
    assert f"CELERY_RESULT_BACKEND is exported (gcs://{exported}): Celery uses it instead of" in note
    done = run_cli("doctor", "-A", "proj", "--timeout", "3", env=env, cwd=tmp_path)
    assert "Note: CELERY_RESULT_BACKEND is exported" in done.stdout
    report = _report(run_cli("doctor", "-A", "proj", "--timeout", "3", "--json", env=_emulator_env(stack), cwd=tmp_path))
    assert report["config"]["bucket"] == ours and report["config"]["notes"] == []


def test_with_no_arguments_it_checks_what_the_environment_names(stack: Any, make_bucket: Any) -> None:
    bucket = make_bucket(lifecycle=HEALTHY)
    env = _emulator_env(stack, CELERY_RESULT_BACKEND=f"gcs://{bucket}?gcs_ttl=3000000", GOOGLE_CLOUD_PROJECT="envproj")
    report = _report(run_cli("doctor", "--json", env=env))
    assert report["config"]["bucket"] == bucket and report["config"]["project"] == "envproj"
    assert report["config"]["result_expires"] == 3_000_000  # gcs_ttl, as the backend reads it
    done = run_cli("doctor", env=env)
    assert f"Checking gs://{bucket}" in done.stdout and "(project envproj," in done.stdout


@pytest.mark.parametrize("scheme", ["celery_gcs.local.builtin:BuiltinGCSBackend+gs", "gs"])
def test_the_builtin_backends_gs_url_is_checked_as_gcs_on_the_same_bucket(scheme: str) -> None:
    """What `dev up --result-backend gs` exports, to compare the two backends: `results` read it, doctor refused it."""
    url = f"{scheme}://the-bucket/runs?gcs_project={PROJECT}&gcs_ttl=600"
    config = doctor_module.resolve_config(doctor_module.parser().parse_args([]), {"CELERY_RESULT_BACKEND": url})
    assert (config.bucket, config.project, config.result_expires) == ("the-bucket", PROJECT, 600)
    (note,) = config.notes
    assert note.startswith(f"{url} selects Celery's built-in gs:// backend: checked as gcs://")


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({}, (), "no bucket to check: pass --bucket, or -A proj"),
        ({"CELERY_RESULT_BACKEND": "gcs://some-bucket"}, (), "no project to check in: pass --project"),
        ({"CELERY_RESULT_BACKEND": "gcs://some-bucket?gcs_tll=5", "GOOGLE_CLOUD_PROJECT": "p"}, (),
         "CELERY_RESULT_BACKEND: unknown setting 'gcs_tll'"),
        ({}, ("-A", "no_such_module_here"), "could not load the Celery app 'no_such_module_here'"),
    ],
    ids=["no-bucket", "no-project", "bad-url", "bad-app"],
)  # fmt: skip
def test_what_cannot_be_worked_out_is_an_error_naming_the_fix(stack: Any, env, args, expected, tmp_path) -> None:
    done = run_cli("doctor", *args, env=_emulator_env(stack, **env), cwd=tmp_path)
    assert done.returncode == 2
    assert expected in done.stderr.replace("\n", " ")
    assert done.stdout == ""


def test_it_says_who_it_checks_as(tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    closed = f"127.0.0.1:{processes.free_port()}"
    env = clean_env(
        GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "no-such-key.json"), HOME=str(home),
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), GCE_METADATA_HOST=closed, GCE_METADATA_IP=closed,
    )  # fmt: skip
    sa = "celery-worker@team-prod-1.iam.gserviceaccount.com"
    done = run_cli("doctor", "--bucket", "some-bucket", "--project", "p", "--impersonate-service-account", sa,
                   env=env, timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Checking as nobody: no Google credentials found" in done.stdout
    # With credentials, an impersonated identity is the target service account.
    source = AnonymousCredentials()
    impersonated = impersonated_credentials.Credentials(
        source_credentials=source, target_principal=sa, target_scopes=[admin.CLOUD_PLATFORM]
    )
    assert doctor_module.describe_credentials(impersonated, 3) == f"{sa} (impersonated)"
