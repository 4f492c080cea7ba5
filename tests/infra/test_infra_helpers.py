"""The small pure functions the components rely on."""

from __future__ import annotations

import ssl
import urllib.parse

import pytest
from celery_gcs_infra import broker, cluster, common, result_backend_url
from celery_gcs_infra.apis import services_for
from kombu.utils.url import parse_url


@pytest.mark.parametrize(
    "network",
    [
        "shared",
        "projects/host-proj/global/networks/shared",
        "https://www.googleapis.com/compute/v1/projects/host-proj/global/networks/shared",
    ],
)
def test_network_id_normalises_names_paths_and_urls(network):
    expected = "projects/host-proj/global/networks/shared"
    if network == "shared":
        expected = "projects/acme/global/networks/shared"
    assert common.network_id("acme", network) == expected


def test_memorystore_url_quotes_the_password_for_kombu():
    url = broker.memorystore_url(host="10.1.2.3", port=6378, password="p@ss/w:rd")
    parsed = parse_url(url)
    assert (parsed["hostname"], parsed["port"], parsed["password"]) == (
        "10.1.2.3",
        6378,
        "p@ss/w:rd",
    )
    assert parsed["ssl"]["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert parsed["virtual_host"] == "0"


def test_external_url_parsed_without_the_scheme_default_port():
    parsed = broker.parse_redis_url("redis://redis.internal")
    assert (parsed.tls, parsed.address, parsed.password, parsed.database) == (
        False,
        "redis.internal:6379",
        "",
        0,
    )
    assert "pw" not in repr(broker.parse_redis_url("rediss://:pw@h:1/3"))


def test_result_backend_url_keeps_the_default_database_readable():
    url = result_backend_url(bucket="b", base_path="a/b", project="p", database="(default)")
    assert url == (
        "gcs://b/a/b?gcs_project=p&firestore_project=p&firestore_database=(default)"
        "&firestore_collection=celery_gcs_chords"
    )
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["firestore_database"] == ["(default)"]


def test_workload_identity_check():
    cluster.require_workload_identity("acme.svc.id.goog", project="acme", name="c", location="l")
    with pytest.raises(ValueError) as caught:
        cluster.require_workload_identity(
            "other.svc.id.goog", project="acme", name="c", location="l"
        )
    assert "--workload-pool=acme.svc.id.goog" in str(caught.value)


def test_services_follow_the_features_in_use():
    minimal = services_for(new_cluster=False, memorystore=False, cmek=False)
    assert "redis.googleapis.com" not in minimal and "compute.googleapis.com" not in minimal
    full = services_for(new_cluster=True, memorystore=True, cmek=True)
    assert set(full) - set(minimal) == {
        "compute.googleapis.com",
        "redis.googleapis.com",
        "cloudkms.googleapis.com",
    }
    assert "secretmanager.googleapis.com" not in full  # not used: the broker URL is a K8s Secret


def test_a_registry_with_neither_image_nor_build_context_names_what_to_set():
    """An installed package cannot guess where a checkout is: a team program must say."""
    from celery_gcs_infra import RegistryArgs

    with pytest.raises(common.SettingError) as raised:
        RegistryArgs(project="acme-payments", location="us-central1", repository_id="celery")
    message = str(raised.value)
    assert "image" in message and "build_context" in message
