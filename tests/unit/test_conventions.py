"""conventions.py: the one builder of the backend's URL, read back by settings.parse."""

from __future__ import annotations

import pytest
from celery_gcs import conventions
from celery_gcs.errors import ConfigurationError
from celery_gcs.settings import parse


def test_the_url_built_is_the_url_parsed() -> None:
    url = conventions.backend_url(
        "results", "team/a", gcs_project="p-1", firestore_database="(default)", firestore_collection="c"
    )
    assert url == "gcs://results/team/a?gcs_project=p-1&firestore_database=(default)&firestore_collection=c"
    settings = parse(url, {})
    assert (settings.bucket, settings.base_path, settings.project) == ("results", "team/a", "p-1")
    assert (settings.firestore_database, settings.firestore_collection) == ("(default)", "c")


@pytest.mark.parametrize(
    ("base_path", "settings", "url"),
    [
        ("", {}, "gcs://results"),
        ("", {"gcs_project": "", "firestore_database": None}, "gcs://results"),
        ("/p/", {"gcs_ttl": "60"}, "gcs://results/p?gcs_ttl=60"),
    ],
)
def test_empty_parts_are_left_out(base_path: str, settings: dict[str, str | None], url: str) -> None:
    assert conventions.backend_url("results", base_path, **settings) == url


def test_a_key_the_backend_does_not_know_is_refused_when_read_back() -> None:
    with pytest.raises(ConfigurationError, match="gcs_tll"):
        parse(conventions.backend_url("results", gcs_tll="5"), {})
