"""``celery-gcs doctor``: is this bucket and Firestore database ready for celery-gcs?

One line per check, each PASS, FAIL (with the fix) or SKIP (with what could
not be checked and why); the exit code is 1 when any check fails.

=================  ==============================================================
bucket             ``buckets.get``: the bucket exists and the caller can reach it
lifecycle          a Delete rule on ``daysSinceCustomTime`` (the backend sets each
                   result's custom time to its expiry) or on age; no rule on age
                   shorter than ``result_expires`` (it would delete live results)
uniform access     uniform bucket-level access is on (IAM only, no object ACLs)
permissions        ``testIamPermissions``: the caller holds what the worker needs
firestore          a one-document query on the chord collection answers
ttl policy         the admin API's ``GetField``: a TTL policy on ``expires_at``
=================  ==============================================================

What it checks comes from, in order: the flags; with ``-A proj``, the app's
``result_backend``, ``result_expires`` and ``gcs_*`` / ``firestore_*`` settings;
without it, the environment (``CELERY_RESULT_BACKEND``, ``GOOGLE_CLOUD_PROJECT``);
all read through ``celery_gcs.settings.parse``, as the backend reads them. It
says which identity it checked as: the credentials' service account or user,
``--impersonate-service-account``'s target, or the emulators' none.

Against the emulators (``STORAGE_EMULATOR_HOST``, ``FIRESTORE_EMULATOR_HOST``)
every check runs that the emulator serves: gcp-storage-emulator stores
lifecycle and IAM settings and answers bucket look-ups as GCS does, but grants
every permission it is asked about, so ``permissions`` is reported as not
checked; the Firestore emulator serves queries for any database name, and does
not serve the admin API, so ``ttl policy`` is not checked there either.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape

from .. import conventions
from ..errors import ConfigurationError
from ..settings import Settings, bucket_problem, parse
from ..stores import admin, retry
from .options import seconds
from .reading import readable_url

#: What the worker does with objects, and the role that grants them on a bucket.
WORKER_PERMISSIONS = conventions.WORKER_BUCKET_PERMISSIONS
WORKER_ROLE = conventions.WORKER_BUCKET_ROLE

E_NO_CREDENTIALS = "no Google credentials found ({error})"
FIX_CREDENTIALS = (
    "gcloud auth application-default login, "
    "or set STORAGE_EMULATOR_HOST / FIRESTORE_EMULATOR_HOST for the emulators"
)
E_NO_BUCKET = (
    "no bucket to check: pass --bucket, or -A proj to read your app's result_backend, "
    "or export CELERY_RESULT_BACKEND=gcs://BUCKET"
)
E_NO_PROJECT = (
    "no project to check in: pass --project, set gcs_project, or export GOOGLE_CLOUD_PROJECT"
)
E_APP = "could not load the Celery app {app!r}: {error}"
NOTE_ENV_WINS = (
    "CELERY_RESULT_BACKEND is exported ({url}): Celery uses it instead of the app's own result_backend, "
    "so that is what is checked; unset it to check the app's"
)
NOTE_READ_AS_GCS = (
    "{url} selects Celery's built-in gs:// backend: checked as gcs:// on the same bucket and prefix (the same "
    "object layout), what switching to gcs:// needs"
)
E_SETTINGS = "{where}: {error}"
EMULATOR_IDENTITY = "emulator (no credentials)"
#: Environment variables Google's clients read the project from, in order.
PROJECT_VARIABLES = ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT")
#: Exit code when what to check cannot be worked out (no bucket, a bad setting, an app that fails to load).
EXIT_USAGE = 2
FIX_PULUMI = "or run `pulumi up` (infra/ creates everything with the right settings)"
UNIFORM_ACCESS = {"iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True}}}


class Status(str, enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Check:
    """The outcome of one check; ``fix`` says what to do about a FAIL."""

    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True, kw_only=True)
class Config:
    bucket: str
    project: str
    #: Firestore's project when it is not ``project`` (the app's firestore_project).
    firestore_project: str | None = None
    database: str = conventions.FIRESTORE_DATABASE
    collection: str = conventions.FIRESTORE_COLLECTION
    #: The app's ``result_expires`` in seconds; 0 means results never expire.
    result_expires: float = float(conventions.RESULT_EXPIRES_SECONDS)
    #: Seconds each check's calls may take, retries included.
    timeout: float = 10.0
    #: A service account to act as (through the caller's credentials), e.g. the worker's.
    impersonate: str | None = None
    #: What the user should know about where the settings came from.
    notes: tuple[str, ...] = ()

    @property
    def chords_project(self) -> str:
        return self.firestore_project or self.project


def lifecycle_fix(bucket: str, result_expires: float, *, emulator: str | None = None) -> str:
    """Rules that delete results once they expire and never before, applied to ``bucket``.

    Results that never expire (``result_expires`` 0) get no age rule: it would delete them all the same.
    """
    age = max(conventions.LIFECYCLE_MAX_AGE_DAYS, _ceil(result_expires / 86_400))
    rules = conventions.lifecycle_rules(max_age_days=age)
    return apply_lifecycle(bucket, rules if result_expires else _without_age(rules), emulator=emulator)


def _without_age(rules: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [dict(rule) for rule in rules if "age" not in (rule.get("condition") or {})]


def apply_lifecycle(bucket: str, rules: list[dict[str, object]], *, emulator: str | None) -> str:
    if emulator:
        return emulator_patch(emulator, bucket, {"lifecycle": {"rule": rules}})
    body = json.dumps({"rule": rules}, separators=(",", ":"))
    return (
        f"echo '{body}' > lifecycle.json && gcloud storage buckets update gs://{bucket} "
        f"--lifecycle-file=lifecycle.json, {FIX_PULUMI}"
    )


def emulator_patch(emulator: str, bucket: str, body: Mapping[str, Any]) -> str:
    """The bucket settings ``body`` applied on the emulator itself: gcloud would change the bucket on GCP."""
    data = json.dumps(body, separators=(",", ":"))
    return (
        f"curl -sS -X PATCH -H 'Content-Type: application/json' -d '{data}' "
        f"{emulator.rstrip('/')}/storage/v1/b/{bucket} (on the emulator; gcloud would change gs://{bucket} on GCP)"
    )


def judge_lifecycle(
    rules: Sequence[Mapping[str, Any]], result_expires: float, bucket: str, *, emulator: str | None = None
) -> Check:
    """Do the bucket's lifecycle rules delete results once they expire, and never before?"""
    expires_days = result_expires / 86_400
    by_custom_time: list[int] = []
    by_age: list[int] = []
    for rule in rules:
        condition = rule.get("condition") or {}
        if (rule.get("action") or {}).get("type") != "Delete":
            continue
        # Rules for noncurrent versions never touch a live result.
        if condition.get("isLive") is False or any(
            key in condition
            for key in ("numNewerVersions", "daysSinceNoncurrentTime", "noncurrentTimeBefore")
        ):
            continue
        if "daysSinceCustomTime" in condition:
            by_custom_time.append(int(condition["daysSinceCustomTime"]))
        elif "age" in condition:
            by_age.append(int(condition["age"]))
    if not by_custom_time and not by_age:
        return Check(
            "lifecycle",
            Status.FAIL,
            "no lifecycle Delete rule on daysSinceCustomTime or age: results are never deleted",
            lifecycle_fix(bucket, result_expires, emulator=emulator),
        )
    if not result_expires and by_age:
        kept = _without_age(rules)
        if not by_custom_time:  # the rules left must still delete results once they expire
            kept += _without_age(conventions.lifecycle_rules())
        return Check(
            "lifecycle",
            Status.FAIL,
            f"result_expires is 0 (never), yet the Delete rule at age {min(by_age)} days deletes every "
            "result that long after it is written",
            f"set result_expires (or gcs_ttl) to how long results must live, or, to keep them for ever, "
            f"remove the age rule: {apply_lifecycle(bucket, kept, emulator=emulator)}",
        )
    too_early = [days for days in by_age if result_expires and days < expires_days]
    if too_early:
        return Check(
            "lifecycle",
            Status.FAIL,
            f"a Delete rule at age {min(too_early)} days removes results before result_expires "
            f"({result_expires:,.0f}s = {expires_days:g} days) says they expire",
            f"raise the age rule to at least {_ceil(expires_days)} days, or lower result_expires; "
            + lifecycle_fix(bucket, result_expires, emulator=emulator),
        )
    found = [f"Delete at daysSinceCustomTime {days}" for days in sorted(by_custom_time)]
    found += [f"Delete at age {days} days" for days in sorted(by_age)]
    if not result_expires:
        note = "result_expires is 0 (never): results carry no custom time and are never deleted"
    elif by_custom_time:
        days = min(by_custom_time)
        note = (
            "results are deleted once they expire"
            if days == 0
            else f"results are deleted {days} days after they expire"
        )
    else:
        note = (
            f"results are deleted {min(by_age)} days after they are written, not before they expire"
        )
    return Check("lifecycle", Status.PASS, f"{'; '.join(found)} ({note})")


def _ceil(days: float) -> int:
    return int(days) if days == int(days) else int(days) + 1


class Doctor:
    """Runs the checks, in order; later checks are skipped when what they need failed."""

    def __init__(self, config: Config, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        env = os.environ if env is None else env
        self.gcs_emulator = env.get("STORAGE_EMULATOR_HOST") or None
        self.firestore_emulator = env.get("FIRESTORE_EMULATOR_HOST") or None
        self._retry = retry.policy(config.timeout)
        self._credentials: Any = None
        self._credentials_error: Exception | None = None
        self._credentials_loaded = False

    # -- identity ------------------------------------------------------------------

    def credentials(self) -> Any:
        """The credentials the checks use (None on the emulators); raises what google-auth raises."""
        if self.gcs_emulator and self.firestore_emulator:
            return None
        if not self._credentials_loaded:
            self._credentials_loaded = True
            try:
                self._credentials = load_credentials(self.config.impersonate)
            except Exception as exc:  # noqa: BLE001 (reported by each check that needs them)
                self._credentials_error = exc
        if self._credentials_error is not None:
            raise self._credentials_error
        return self._credentials

    def identity(self) -> str:
        """Who the checks run as, in words."""
        if self.gcs_emulator and self.firestore_emulator:
            return EMULATOR_IDENTITY
        try:
            credentials = self.credentials()
        except Exception as exc:  # noqa: BLE001 (said here, failed by the checks)
            return f"nobody: {E_NO_CREDENTIALS.format(error=admin.first_line(exc))}"
        described = describe_credentials(credentials, self.config.timeout)
        if self.gcs_emulator or self.firestore_emulator:
            emulated = "GCS" if self.gcs_emulator else "Firestore"
            described += f"; {emulated}: {EMULATOR_IDENTITY}"
        return described

    # -- GCS ---------------------------------------------------------------------

    def gcs_checks(self) -> list[Check]:
        config = self.config
        problem = bucket_problem(config.bucket)
        if problem:
            failed = Check("bucket", Status.FAIL, f"{config.bucket!r} is not a valid bucket name: {problem}",
                           "pass the bucket's real name with --bucket")  # fmt: skip
            return [
                failed,
                *self._skipped(
                    ("lifecycle", "uniform access", "permissions"), "needs a valid bucket name"
                ),
            ]
        try:
            client = self._storage_client()
        except Exception as exc:  # noqa: BLE001 (DefaultCredentialsError and kin: reported, not raised)
            failed = Check(
                "bucket",
                Status.FAIL,
                E_NO_CREDENTIALS.format(error=admin.first_line(exc)),
                FIX_CREDENTIALS,
            )
            return [
                failed,
                *self._skipped(("lifecycle", "uniform access", "permissions"), "needs credentials"),
            ]
        try:
            found, bucket, reached = self.check_bucket(client)
            checks = [found]
            if bucket is None:
                checks += self._skipped(
                    ("lifecycle", "uniform access"), "needs the bucket's settings"
                )
            else:
                checks += [
                    judge_lifecycle(
                        bucket.lifecycle_rules, config.result_expires, config.bucket, emulator=self.gcs_emulator
                    ),
                    self.check_uniform_access(bucket),
                ]
            # testIamPermissions needs no permission of its own: worth asking even after a 403.
            if reached:
                checks.append(self.check_permissions(client))
            else:
                checks += self._skipped(("permissions",), "needs the bucket")
            return checks
        finally:
            client.close()

    def _storage_client(self) -> Any:
        credentials = None if self.gcs_emulator else self.credentials()
        return admin.BucketReader.connect(
            self.config.project, credentials, timeout=self.config.timeout, retry=self._retry
        )

    def _where_gcs(self) -> str:
        return (
            f"the GCS emulator at {self.gcs_emulator}"
            if self.gcs_emulator
            else "storage.googleapis.com"
        )

    def check_bucket(self, client: Any) -> tuple[Check, Any, bool]:
        """The check, the bucket (None if unread), and whether GCS found the bucket at all."""
        name, project = self.config.bucket, self.config.project
        try:
            bucket = client.bucket(name)
        except admin.Missing:
            fix = (
                f"gcloud storage buckets create gs://{name} --project={project} --location=LOCATION "
                f"--uniform-bucket-level-access, {FIX_PULUMI}"
            )
            if self.gcs_emulator:
                fix = (
                    f"curl -sS -X POST -H 'Content-Type: application/json' -d '{{\"name\":\"{name}\"}}' "
                    f"{self.gcs_emulator.rstrip('/')}/storage/v1/b?project={project} (on the emulator; "
                    f"`celery-gcs dev up` makes its own bucket with the right settings)"
                )
            return (
                Check(
                    "bucket", Status.FAIL, f"gs://{name} does not exist (project {project})", fix
                ),
                None,
                False,
            )
        except admin.Denied as exc:
            detail = f"403: the caller may not read gs://{name}'s settings (storage.buckets.get): {admin.first_line(exc)}"
            fix = f"run the doctor as an identity with storage.buckets.get on gs://{name} (e.g. roles/storage.admin)"
            return Check("bucket", Status.FAIL, detail, fix), None, True
        except Exception as exc:  # noqa: BLE001 (any failure is the check's finding)
            return self._unreachable_gcs(exc), None, False
        where = f"location {bucket.location}" if bucket.location else "no location reported"
        return (
            Check("bucket", Status.PASS, f"gs://{name} exists ({where}, via {self._where_gcs()})"),
            bucket,
            True,
        )

    def _unreachable_gcs(self, exc: BaseException) -> Check:
        if self.gcs_emulator:
            fix = "start the emulator (celery-gcs dev up) and export the STORAGE_EMULATOR_HOST it prints"
        else:
            fix = "check network access to storage.googleapis.com and the credentials in use"
        return Check(
            "bucket", Status.FAIL, f"cannot reach {self._where_gcs()}: {admin.first_line(exc)}", fix
        )

    def check_uniform_access(self, bucket: Any) -> Check:
        if bucket.iam_configuration.uniform_bucket_level_access_enabled:
            return Check("uniform access", Status.PASS, "uniform bucket-level access is on")
        return Check(
            "uniform access",
            Status.FAIL,
            "uniform bucket-level access is off: object ACLs can grant access that bucket IAM does not show",
            emulator_patch(self.gcs_emulator, self.config.bucket, UNIFORM_ACCESS)
            if self.gcs_emulator
            else f"gcloud storage buckets update gs://{self.config.bucket} --uniform-bucket-level-access, {FIX_PULUMI}",
        )

    def check_permissions(self, client: Any) -> Check:
        name = self.config.bucket
        try:
            granted = client.permissions(name, WORKER_PERMISSIONS)
        except admin.Missing:
            return Check("permissions", Status.SKIP, "not checked: needs the bucket")
        except Exception as exc:  # noqa: BLE001 (any failure is the check's finding)
            return Check(
                "permissions",
                Status.SKIP,
                f"not checked: testIamPermissions failed: {admin.first_line(exc)}",
            )
        missing = [permission for permission in WORKER_PERMISSIONS if permission not in granted]
        if missing:
            return Check(
                "permissions",
                Status.FAIL,
                f"the caller lacks {', '.join(missing)} on gs://{name} (the worker needs {', '.join(WORKER_PERMISSIONS)})",
                f"gcloud storage buckets add-iam-policy-binding gs://{name} --member=MEMBER --role={WORKER_ROLE}, "
                f"{FIX_PULUMI}",
            )
        if self.gcs_emulator:
            return Check(
                "permissions",
                Status.SKIP,
                "not checked: the GCS emulator grants every permission it is asked about (it enforces no IAM)",
            )
        return Check(
            "permissions",
            Status.PASS,
            f"the caller holds {', '.join(WORKER_PERMISSIONS)} on gs://{name}",
        )

    # -- Firestore -------------------------------------------------------------------

    def firestore_checks(self) -> list[Check]:
        reachable = self.check_firestore()
        if reachable.status is not Status.PASS:
            return [
                reachable,
                Check(
                    "ttl policy", Status.SKIP, "not checked: needs a reachable Firestore database"
                ),
            ]
        return [reachable, self.check_ttl()]

    def _where_firestore(self) -> str:
        if self.firestore_emulator:
            return f"the Firestore emulator at {self.firestore_emulator}"
        return "firestore.googleapis.com"

    def check_firestore(self) -> Check:
        config = self.config
        project = config.chords_project
        database = f"Firestore database {config.database!r} (project {project})"
        try:
            credentials = None if self.firestore_emulator else self.credentials()
            client = admin.DatabaseReader(
                project, config.database, credentials, timeout=config.timeout, retry=self._retry
            )
        except Exception as exc:  # noqa: BLE001 (any failure is the check's finding)
            return Check(
                "firestore",
                Status.FAIL,
                E_NO_CREDENTIALS.format(error=admin.first_line(exc)),
                FIX_CREDENTIALS,
            )
        try:
            client.query(config.collection)
        except admin.Missing as exc:
            fix = (
                f"gcloud firestore databases create --database={config.database} --location=LOCATION "
                f"--project={project}, {FIX_PULUMI}"
            )
            return Check(
                "firestore", Status.FAIL, f"{database} does not exist: {admin.first_line(exc)}", fix
            )
        except admin.Denied as exc:
            fix = f"gcloud projects add-iam-policy-binding {project} --member=MEMBER --role=roles/datastore.user"
            return Check(
                "firestore",
                Status.FAIL,
                f"the caller may not read {database}: {admin.first_line(exc)}",
                fix,
            )
        except admin.WrongMode as exc:
            fix = "celery-gcs needs a database in Firestore native mode; create one with --type=firestore-native"
            return Check(
                "firestore", Status.FAIL, f"{database} cannot be queried: {admin.first_line(exc)}", fix
            )
        except Exception as exc:  # noqa: BLE001 (any failure is the check's finding)
            if self.firestore_emulator:
                fix = "start the emulator (celery-gcs dev up) and export the FIRESTORE_EMULATOR_HOST it prints"
            else:
                fix = "check network access to firestore.googleapis.com and the credentials in use"
            return Check(
                "firestore",
                Status.FAIL,
                f"cannot reach {self._where_firestore()}: {admin.first_line(exc)}",
                fix,
            )
        finally:
            client.close()
        if self.firestore_emulator:
            detail = (
                f"{self._where_firestore()} answers a query on {config.collection!r} (the emulator serves any "
                f"database name, so whether {config.database!r} exists on GCP is not checked)"
            )
        else:
            detail = f"{database} answers a query on collection {config.collection!r}"
        return Check("firestore", Status.PASS, detail)

    def check_ttl(self) -> Check:
        """A TTL policy on every collection group the backend writes chord documents to."""
        config = self.config
        field = conventions.FIRESTORE_TTL_FIELD
        passed, failed, fixes = [], [], []
        for group in conventions.chord_collection_groups(config.collection):
            fix = (
                f"gcloud firestore fields ttls update {field} --collection-group={group} --enable-ttl "
                f"--database={config.database} --project={config.chords_project}"
            )
            try:
                state = self._ttl_reader().state(group, field)
            except admin.NotOffered:
                where = "on the emulator" if self.firestore_emulator else f"at {self._where_firestore()}"
                return Check("ttl policy", Status.SKIP, f"not checked: the Firestore admin API is not available {where}")
            except admin.Denied as exc:
                return Check(
                    "ttl policy",
                    Status.SKIP,
                    f"not checked: the caller may not read field settings through the admin API "
                    f"(e.g. roles/datastore.viewer grants it): {admin.first_line(exc)}",
                )
            except Exception as exc:  # noqa: BLE001 (any failure is the check's finding)
                return Check("ttl policy", Status.SKIP, f"not checked: the Firestore admin API failed: {admin.first_line(exc)}")
            if state is None:
                failed.append(f"no TTL policy on {group}.{field}")
                fixes.append(fix)
                continue
            if state == "ACTIVE":
                passed.append(f"{group}.{field} active")
            elif state == "CREATING":
                passed.append(f"{group}.{field} being applied (CREATING; new documents already expire)")
            else:
                failed.append(f"TTL policy on {group}.{field} is {state}")
                fixes.append(f"enable it again: {fix}")
        if failed:
            detail = "; ".join(failed) + ": chord documents of abandoned chords are never deleted"
            return Check("ttl policy", Status.FAIL, detail, "; ".join(fixes) + f"; {FIX_PULUMI}")
        return Check("ttl policy", Status.PASS, "TTL policies: " + ", ".join(passed))

    def _ttl_reader(self) -> Any:
        credentials = None if self.firestore_emulator else self.credentials()
        return admin.TtlReader(
            self.config.chords_project, self.config.database, credentials,
            emulator=self.firestore_emulator, timeout=self.config.timeout, retry=self._retry,
        )  # fmt: skip

    # -- all ---------------------------------------------------------------------------

    def run(self) -> list[Check]:
        return [*self.gcs_checks(), *self.firestore_checks()]

    @staticmethod
    def _skipped(names: Sequence[str], reason: str) -> list[Check]:
        return [Check(name, Status.SKIP, f"not checked: {reason}") for name in names]


# -- identity ------------------------------------------------------------------------


def load_credentials(impersonate: str | None) -> Any:
    """Application Default Credentials, or a service account acting through them."""
    return admin.load_credentials(impersonate)


def describe_credentials(credentials: Any, timeout: float) -> str:
    """The service account's email, or the user's; what could be learnt without failing the run."""
    try:
        found = admin.identity_of(credentials, timeout)
    except Exception as exc:  # noqa: BLE001 (the checks report the failure itself)
        return f"{type(credentials).__name__} (identity unknown: {admin.first_line(exc)})"
    return found or f"{type(credentials).__name__} (no email)"


# -- what to check ----------------------------------------------------------------------


def load_app(name: str) -> Any:
    from celery.app.utils import find_app

    try:
        return find_app(name)
    except Exception as exc:  # ImportError, AttributeError, or anything the module itself raises
        raise ConfigurationError(E_APP.format(app=name, error=admin.first_line(exc))) from exc


def resolve_config(args: argparse.Namespace, env: Mapping[str, str]) -> Config:
    """Flags first, then the app's settings (``-A``) or the environment's, parsed as the backend parses them."""
    found: Settings | None = None
    expires: Any = None
    notes: list[str] = []
    if args.app:
        app = load_app(args.app)
        url, conf, where = app.conf.result_backend, app.conf, f"the app {args.app!r}"
        expires = app.conf.result_expires
        if env.get("CELERY_RESULT_BACKEND") and not args.bucket:
            notes.append(NOTE_ENV_WINS.format(url=env["CELERY_RESULT_BACKEND"]))
            where = f"CELERY_RESULT_BACKEND (which wins over the app {args.app!r}'s result_backend)"
    else:
        url, conf, where = env.get("CELERY_RESULT_BACKEND"), {}, "CELERY_RESULT_BACKEND"
    if url and readable_url(url) != url:  # as `celery-gcs results` reads it (dev up --result-backend gs)
        notes.append(NOTE_READ_AS_GCS.format(url=url))
        url = readable_url(url)
    if (url or conf.get("gcs_bucket")) and not (args.bucket and not args.app):
        try:
            found = parse(url, conf)
        except ConfigurationError as exc:
            raise ConfigurationError(E_SETTINGS.format(where=where, error=exc)) from exc
    bucket = args.bucket or (found.bucket if found else None)
    if not bucket:
        raise ConfigurationError(E_NO_BUCKET)
    project = (
        args.project
        or (found.project if found else None)
        or next((env[name] for name in PROJECT_VARIABLES if env.get(name)), None)
    )
    if not project:
        raise ConfigurationError(E_NO_PROJECT)
    if args.result_expires is not None:
        result_expires = args.result_expires
    elif found is not None and found.ttl:
        result_expires = found.ttl  # gcs_ttl wins over result_expires, as in the backend
    elif args.app:
        result_expires = _seconds(expires)
    else:
        result_expires = float(conventions.RESULT_EXPIRES_SECONDS)
    return Config(
        bucket=bucket,
        project=project,
        firestore_project=None if args.project or found is None else found.firestore_project,
        database=args.database or (found.firestore_database if found else conventions.FIRESTORE_DATABASE),
        collection=args.collection or (found.firestore_collection if found else conventions.FIRESTORE_COLLECTION),
        result_expires=result_expires,
        timeout=args.timeout,
        impersonate=args.impersonate_service_account,
        notes=tuple(notes),
    )


def _seconds(expires: Any) -> float:
    """Celery's result_expires (seconds, a timedelta, or None for never) in seconds."""
    if expires is None:
        return 0.0
    if hasattr(expires, "total_seconds"):
        return float(expires.total_seconds())
    return float(expires)


# -- output --------------------------------------------------------------------------

_STYLES = {Status.PASS: "green", Status.FAIL: "bold red", Status.SKIP: "yellow"}


def render(config: Config, doctor: Doctor, checks: Sequence[Check], console: Console) -> None:
    console.print(
        f"Checking gs://{escape(config.bucket)} via {escape(doctor._where_gcs())}, and Firestore database "
        f"{escape(config.database)!s} via {escape(doctor._where_firestore())} (project {escape(config.project)}, "
        f"result_expires {config.result_expires:,.0f}s)",
        highlight=False,
    )
    console.print(f"Checking as {escape(doctor.identity())}", highlight=False)
    for note in config.notes:
        console.print(f"[yellow]Note:[/] {escape(note)}", highlight=False)
    width = max(len(check.name) for check in checks)
    for check in checks:
        line = f"[{_STYLES[check.status]}]{check.status.value}[/] {check.name:<{width}}  {escape(check.detail)}"
        if check.fix:
            line += f" [bold]fix:[/] {escape(check.fix)}"
        console.print(line, highlight=False)
    counts = {status: sum(1 for c in checks if c.status is status) for status in Status}
    console.print(
        f"{counts[Status.PASS]} passed, {counts[Status.FAIL]} failed, {counts[Status.SKIP]} not checked",
        highlight=False,
    )


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="celery-gcs doctor",
        description="Check that a bucket and a Firestore database are ready for celery-gcs: the ones "
        "your app (-A) or the environment (CELERY_RESULT_BACKEND, GOOGLE_CLOUD_PROJECT) names, unless "
        "flags name others. Uses the emulators when STORAGE_EMULATOR_HOST / FIRESTORE_EMULATOR_HOST are "
        "set, else Application Default Credentials. Exits non-zero when any check fails.",
    )
    parser.add_argument(
        "-A", "--app", help="your Celery app (as for `celery -A`): read its result_backend, result_expires, "
        "gcs_* and firestore_* settings"
    )  # fmt: skip
    parser.add_argument("--bucket", help="the result bucket (default: from the app or CELERY_RESULT_BACKEND)")
    parser.add_argument(
        "--project",
        help="the GCP project of the bucket and Firestore (default: gcs_project / firestore_project, "
        "else GOOGLE_CLOUD_PROJECT)",
    )
    parser.add_argument(
        "--database", help=f"Firestore database (default: the app's, else {conventions.FIRESTORE_DATABASE})"
    )
    parser.add_argument(
        "--collection",
        help=f"Firestore collection of chord documents (default: the app's, else {conventions.FIRESTORE_COLLECTION})",
    )
    parser.add_argument(
        "--result-expires",
        type=seconds,
        metavar="SECONDS",
        help="results' lifetime (default: the app's gcs_ttl or result_expires, else Celery's 86400; "
        "0: results never expire)",
    )
    parser.add_argument(
        "--impersonate-service-account",
        metavar="EMAIL",
        help="check as this service account (e.g. the worker's), through your credentials; "
        "needs roles/iam.serviceAccountTokenCreator on it",
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="per check, retries included (default 10)",
    )
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    return parser


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    try:
        config = resolve_config(args, os.environ)
    except ConfigurationError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return EXIT_USAGE
    return run(config, as_json=args.json)


def run(config: Config, *, as_json: bool = False, console: Console | None = None) -> int:
    """Run every check against ``config`` and print them; 1 when any failed."""
    console = console or Console(soft_wrap=True)
    doctor = Doctor(config)
    checks = doctor.run()
    failed = any(check.status is Status.FAIL for check in checks)
    if as_json:
        payload = {
            "ok": not failed,
            "config": asdict(config),
            "gcs": doctor._where_gcs(),
            "firestore": doctor._where_firestore(),
            "identity": doctor.identity(),
            "checks": [{**asdict(check), "status": check.status.value} for check in checks],
        }
        console.file.write(json.dumps(payload, indent=2) + "\n")
    else:
        render(config, doctor, checks, console)
    return 1 if failed else 0
