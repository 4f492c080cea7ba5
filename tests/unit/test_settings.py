"""Settings: parsed once, validated, every bad value named with its fix."""

from __future__ import annotations

import datetime as dt

import pytest
from celery_gcs import conventions
from celery_gcs.errors import ConfigurationError
from celery_gcs.settings import Settings, parse


def test_url_gives_bucket_prefix_and_query_settings() -> None:
    settings = parse("gcs://my-bucket/some/prefix/?gcs_project=p1&gcs_ttl=60&firestore_database=chords", {})
    assert settings == Settings(
        bucket="my-bucket", base_path="some/prefix", project="p1", ttl=60.0,
        firestore_project="p1", firestore_database="chords",
    )  # fmt: skip
    assert settings.object_name("celery-task-meta-1") == "some/prefix/celery-task-meta-1"


def test_the_url_from_celerys_documentation_of_gs_works_with_gcs() -> None:
    """Celery documents ``gs://mybucket/some-prefix?gcs_project=myproject&ttl=600``; only the scheme changes."""
    settings = parse("gcs://mybucket/some-prefix?gcs_project=myproject&ttl=600", {})
    assert (settings.bucket, settings.base_path, settings.project, settings.ttl) == (
        "mybucket", "some-prefix", "myproject", 600.0,
    )  # fmt: skip
    assert settings.sources["gcs_ttl"] == "result_backend URL"


def test_builtin_setting_names_work_from_app_conf() -> None:
    conf = {
        "gcs_bucket": "b-1", "gcs_project": "p", "gcs_base_path": "/x/", "gcs_ttl": 5,
        "gcs_threadpool_maxsize": 4, "firestore_project": "fp",
    }  # fmt: skip
    settings = parse(None, conf)
    assert (settings.bucket, settings.base_path, settings.project, settings.ttl) == ("b-1", "x", "p", 5.0)
    assert (settings.threadpool_maxsize, settings.firestore_project) == (4, "fp")


def test_a_bare_scheme_takes_the_bucket_from_app_conf() -> None:
    assert parse("gcs://", {"gcs_bucket": "conf-bucket"}).bucket == "conf-bucket"


def test_url_wins_over_app_conf() -> None:
    settings = parse("gcs://from-url?gcs_ttl=1", {"gcs_bucket": "from-conf", "gcs_ttl": 9})
    assert (settings.bucket, settings.ttl) == ("from-url", 1.0)


def test_defaults_come_from_the_shared_names() -> None:
    settings = parse("gcs://bucket", {})
    assert settings.firestore_database == conventions.FIRESTORE_DATABASE
    assert settings.firestore_collection == conventions.FIRESTORE_COLLECTION
    assert settings.max_result_bytes == conventions.MAX_RESULT_BYTES
    assert settings.project is None and settings.firestore_project is None


@pytest.mark.parametrize(
    ("url", "conf", "expected"),
    [
        ("gcs://bucket?gcs_tll=5", {}, "unknown setting 'gcs_tll' in the result_backend URL (did you mean 'gcs_ttl'?)"),
        ("gcs://bucket?ttl=600&gcs_ttl=60", {}, "ttl and gcs_ttl are the same setting; give gcs_ttl only"),
        ("gcs://bucket?tll=600", {}, "unknown setting 'tll' in the result_backend URL (did you mean 'ttl'?)"),
        ("gcs://bucket", {"gcs_projet": "p"}, "unknown setting 'gcs_projet' in app.conf (did you mean 'gcs_project'?)"),
        ("gcs://bucket", {"firestore_db": "x"}, "unknown setting 'firestore_db' in app.conf"),
        ("gs://bucket", {}, "scheme must be gcs://"),
        ("gcs:///prefix", {}, "no bucket configured: set result_backend = 'gcs://BUCKET[/PREFIX]'"),
        ("gcs://user:pw@bucket", {}, "no user, password or port"),
        ("gcs://bucket:443", {}, "no user, password or port"),
        ("gcs://bucket#frag", {}, "unexpected fragment"),
        ("gcs://bucket?gcs_ttl=1&gcs_ttl=2", {}, "gcs_ttl is given twice"),
        ("gcs://bucket?gcs_bucket=other", {}, "gcs_bucket goes in the URL itself"),
        ("gcs://bucket?gcs_ttl", {}, "bad query string (bad query field: 'gcs_ttl')"),
        ("gcs://bucket?gcs_ttl=", {}, "gcs_ttl (from result_backend URL) must be a float, got ''"),
        ("gcs://bucket?gcs_ttl=-1", {}, "gcs_ttl (from result_backend URL) must be at least 0, got '-1'"),
        ("gcs://bucket?gcs_threadpool_maxsize=0", {}, "gcs_threadpool_maxsize (from result_backend URL) must be at least 1"),
        ("gcs://bucket?gcs_timeout=0", {}, "gcs_timeout (from result_backend URL) must be greater than 0"),
        ("gcs://bucket", {"gcs_max_result_bytes": "lots"}, "gcs_max_result_bytes (from app.conf.gcs_max_result_bytes) must be a int"),
        ("gcs://bucket?firestore_database=Bad_Name", {}, "firestore_database (from result_backend URL) = 'Bad_Name' is invalid"),
        ("gcs://bucket?firestore_collection=__x__", {}, "reserved by Firestore"),
        ("gcs://bucket?gcs_project=has space", {}, "gcs_project (from result_backend URL) = 'has space' is invalid"),
        (None, {}, "no bucket configured"),
        ("gcs://bucket", {"result_expires": -1}, "app.conf.result_expires = -1 is invalid: it is negative"),
        ("gcs://bucket", {"result_expires": dt.timedelta(seconds=-5)}, "app.conf.result_expires = datetime.timedelta"),
        ("gcs://bucket", {"result_failure_expires": "soon"}, "app.conf.result_failure_expires = 'soon' is invalid: not a number"),
        ("gcs://bucket?gcs_warm_up=maybe", {}, "gcs_warm_up (from result_backend URL) must be true or false, got 'maybe'"),
    ],
)
def test_bad_settings_are_named_with_their_fix(url: str | None, conf: dict, expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse(url, conf)
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("url", "conf", "warm_up"),
    [
        ("gcs://bucket", {}, True),
        ("gcs://bucket?gcs_warm_up=false", {}, False),
        ("gcs://bucket?gcs_warm_up=1", {}, True),
        ("gcs://bucket", {"gcs_warm_up": False}, False),
        ("gcs://bucket", {"gcs_warm_up": "Off"}, False),
    ],
)
def test_warm_up_is_on_unless_turned_off(url: str, conf: dict, warm_up: bool) -> None:
    assert parse(url, conf).warm_up is warm_up


@pytest.mark.parametrize(
    ("bucket", "problem"),
    [
        ("ab", "3 to 222 characters"),
        ("My-Bucket", "lowercase letters"),
        ("-bucket", "starting and ending with a letter or digit"),
        ("bucket-", "starting and ending with a letter or digit"),
        ("a" * 64, "each dot-separated part is 1 to 63 characters"),
        ("a..b", "1 to 63 characters"),
        ("googbucket", "'goog'"),
        ("my-google-bucket", "'google'"),
        ("192.168.1.1", "IP address"),
        ("bucket%20x", "lowercase letters"),
    ],
)
def test_invalid_bucket_names_are_rejected_with_the_rule(bucket: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse(f"gcs://{bucket}", {})
    message = str(caught.value)
    assert "gcs_bucket" in message and problem in message


@pytest.mark.parametrize("bucket", ["abc", "my_bucket-1", "a.b.c", "x" * 63, ".".join(["a" * 63] * 3)])
def test_valid_bucket_names_are_accepted(bucket: str) -> None:
    assert parse(f"gcs://{bucket}", {}).bucket == bucket


@pytest.mark.parametrize("expires", [None, 0, 60, dt.timedelta(days=2), "3600"])
def test_celerys_own_expiry_settings_take_what_celery_takes(expires: object) -> None:
    assert parse("gcs://bucket", {"result_expires": expires, "result_failure_expires": expires}).bucket == "bucket"


def test_settings_are_frozen() -> None:
    settings = parse("gcs://bucket", {})
    with pytest.raises(AttributeError):
        settings.bucket = "other"  # type: ignore[misc]
    assert settings.bucket == "bucket"
