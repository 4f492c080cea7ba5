"""The stack watches its workers: PodMonitorings the collectors can reach, a dashboard and alerts from the metrics' names."""

from __future__ import annotations

import copy
import json

import pytest
from celery_gcs.telemetry import names
from celery_gcs_infra import monitoring

from .cloud_model import (
    ALERT_POLICY,
    DASHBOARD,
    NETWORK_POLICY,
    POD_MONITORING,
    monitoring_rejections,
    scrape_rejections,
)
from .infra_inventory import Inventory


def promql(inv: Inventory) -> list[str]:
    """Every PromQL expression the stack's dashboards and alert policies hold."""
    found = []
    for board in inv.of_type(DASHBOARD):
        layout = json.loads(board["inputs"]["dashboardJson"])["mosaicLayout"]
        for tile in layout["tiles"]:
            found += [d["timeSeriesQuery"]["prometheusQuery"] for d in tile["widget"]["xyChart"]["dataSets"]]
    for policy in inv.of_type(ALERT_POLICY):
        found += [c["conditionPrometheusQueryLanguage"]["query"] for c in policy["inputs"]["conditions"]]
    return found


def unexported(queries: list[str]) -> set[str]:
    """Metric names the queries read that neither the workers, the queue-length service nor GKE export."""
    return {name for query in queries for name in monitoring.series_named(query)} - names.SERIES - monitoring.SYSTEM_SERIES


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_every_chart_and_alert_reads_a_metric_that_is_exported(request, name) -> None:
    queries = promql(request.getfixturevalue(name))
    assert len(queries) >= 20
    assert unexported(queries) == set()
    # Every metric the workers and the queue-length service export is on the dashboard or in an alert.
    read = {series for query in queries for series in monitoring.series_named(query)}
    assert {metric for metric in names.ALL if not set(metric.series) & read} == set()


def test_a_chart_naming_a_metric_no_one_exports_is_caught() -> None:
    renamed = monitoring.queries("ns")["failed"].replace("celery_tasks_failed_total", "celery_task_failures_total")
    assert unexported([renamed]) == {"celery_task_failures_total"}


def test_the_workers_and_the_queue_length_service_are_scraped_through_their_policies(prod) -> None:
    monitors = {m["inputs"]["metadata"]["name"]: m["inputs"] for m in prod.of_type(POD_MONITORING)}
    assert set(monitors) == {monitoring.WORKERS_JOB, monitoring.QUEUE_LENGTH_JOB}
    assert monitors[monitoring.WORKERS_JOB]["spec"]["endpoints"][0]["port"] == "metrics"
    assert scrape_rejections(prod) == [] and monitoring_rejections(prod) == []


def test_a_policy_that_shuts_the_collectors_out_is_rejected(runs) -> None:
    inv = Inventory(copy.deepcopy(runs["prod"]))
    for policy in inv.of_type(NETWORK_POLICY):
        policy["inputs"]["spec"]["ingress"] = []
    found = scrape_rejections(inv)
    assert len(found) == 2 and all("blocks the collectors (gmp-system)" in f for f in found), found


def _promql(policy: dict) -> dict:
    return policy["inputs"]["conditions"][0]["conditionPrometheusQueryLanguage"]


def _second_condition(policy: dict) -> None:
    policy["inputs"]["conditions"].append(copy.deepcopy(policy["inputs"]["conditions"][0]))


def _mql(policy: dict) -> None:
    condition = policy["inputs"]["conditions"][0]
    condition["conditionMonitoringQueryLanguage"] = {"query": "fetch k8s_container", "duration": "60s"}
    del condition["conditionPrometheusQueryLanguage"]


POLICY_MUTATIONS = {
    "duration in minutes": (lambda p: _promql(p).update(duration="5m"), "is not a non-negative duration in seconds"),
    "interval not of 30 s": (lambda p: _promql(p).update(evaluationInterval="45s"), "not a positive multiple of 30"),
    "a second condition": (_second_condition, "has only that one condition"),
    "seven conditions": (lambda p: [_second_condition(p) for _ in range(6)], "one to six conditions, not 7"),
    "metrics checked": (lambda p: _promql(p).pop("disableMetricValidation"), "set disableMetricValidation"),
    "unbalanced query": (lambda p: _promql(p).update(query="sum(rate(x{a=\"b\"}[5m])"), "does not parse"),
    "MQL": (_mql, "MQL is deprecated"),
    "two condition types": (
        lambda p: p["inputs"]["conditions"][0].update(conditionAbsent={"duration": "60s"}), "exactly one condition type"
    ),
    "upper-case label": (lambda p: p["inputs"]["userLabels"].update(Team="x"), "user labels"),
    "long documentation": (lambda p: p["inputs"]["documentation"].update(content="x" * 9000), "8,192 characters"),
}


@pytest.mark.parametrize("mutation", POLICY_MUTATIONS)
def test_the_model_refuses_what_cloud_monitoring_refuses_in_an_alert_policy(runs, mutation) -> None:
    change, expected = POLICY_MUTATIONS[mutation]
    inv = Inventory(copy.deepcopy(runs["dev"]))
    assert monitoring_rejections(inv) == []
    change(inv.of_type(ALERT_POLICY)[0])
    found = monitoring_rejections(inv)
    assert any(expected in f for f in found), found


def _tiles(inv: Inventory, change) -> None:
    board = inv.one(DASHBOARD)
    layout = json.loads(board["inputs"]["dashboardJson"])
    change(layout["mosaicLayout"])
    board["inputs"]["dashboardJson"] = json.dumps(layout)


def _first_query(layout: dict) -> dict:
    return layout["tiles"][0]["widget"]["xyChart"]["dataSets"][0]["timeSeriesQuery"]


DASHBOARD_MUTATIONS = {
    "60 columns": (lambda m: m.update(columns=60), "1 to 48 columns, not 60"),
    "a tile past the columns": (lambda m: m["tiles"][1].update(xPos=40), "reaches past column 48"),
    "a tile of no height": (lambda m: m["tiles"][1].update(height=0), "width and height of at least 1"),
    "MQL chart": (lambda m: _first_query(m).update(timeSeriesQueryLanguage="fetch x"), "exactly one of"),
    "only MQL": (
        lambda m: _first_query(m).update(timeSeriesQueryLanguage=_first_query(m).pop("prometheusQuery")), "MQL is deprecated"
    ),
    "a bar of no kind": (lambda m: m["tiles"][0]["widget"]["xyChart"]["dataSets"][0].update(plotType="PIE"), "plotType"),
}


@pytest.mark.parametrize("mutation", DASHBOARD_MUTATIONS)
def test_the_model_refuses_what_cloud_monitoring_refuses_in_a_dashboard(runs, mutation) -> None:
    change, expected = DASHBOARD_MUTATIONS[mutation]
    inv = Inventory(copy.deepcopy(runs["dev"]))
    _tiles(inv, change)
    found = monitoring_rejections(inv)
    assert len(found) == 1 and expected in found[0], found


def test_thresholds_and_channels_come_from_stack_config(prod) -> None:
    policies = {p["inputs"]["displayName"]: p["inputs"] for p in prod.of_type(ALERT_POLICY)}
    assert len(policies) == 6
    for policy in policies.values():
        assert policy["notificationChannels"] == ["projects/acme-celery-prod/notificationChannels/1234567890"]
    backlog = next(p for title, p in policies.items() if title.startswith("Celery backlog"))
    assert backlog["conditions"][0]["conditionPrometheusQueryLanguage"]["query"].endswith(" > 600")


def test_the_open_chords_are_charted_and_a_chord_past_its_deadline_alerts(prod) -> None:
    board = json.loads(prod.one(DASHBOARD)["inputs"]["dashboardJson"])
    charts = {
        tile["widget"]["title"]: [d["timeSeriesQuery"]["prometheusQuery"] for d in tile["widget"]["xyChart"]["dataSets"]]
        for tile in board["mosaicLayout"]["tiles"]
    }
    assert {s for q in charts["Open chords"] for s in monitoring.series_named(q)} == {str(names.CHORDS_OPEN)}
    assert {s for q in charts["Oldest open chord's age (s)"] for s in monitoring.series_named(q)} == {
        str(names.CHORD_OLDEST_OPEN_AGE)
    }
    overdue = [p["inputs"] for p in prod.of_type(ALERT_POLICY) if p["name"].endswith("-chord-overdue")]
    assert len(overdue) == 1
    query = overdue[0]["conditions"][0]["conditionPrometheusQueryLanguage"]["query"]
    assert monitoring.series_named(query) == {str(names.CHORD_OLDEST_OPEN_AGE)}
    assert query.endswith(f" > {monitoring.Thresholds().chord_open_minutes * 60}")  # the default deadline, in seconds
    assert all(metric.source == "worker" for metric in (names.CHORDS_OPEN, names.CHORD_OLDEST_OPEN_AGE))


def test_monitoring_off_takes_everything_with_it(quiet) -> None:
    assert not quiet.of_type(POD_MONITORING) and not quiet.of_type(ALERT_POLICY) and not quiet.of_type(DASHBOARD)
    services = {s["inputs"]["service"] for s in quiet.of_type("gcp:projects/service:Service")}
    assert "monitoring.googleapis.com" not in services


def test_a_bad_channel_or_threshold_is_named() -> None:
    from celery_gcs_infra import SettingError

    with pytest.raises(SettingError) as caught:
        monitoring.Thresholds(failure_percent=0)
    assert caught.value.field == "alert_failure_percent"
    with pytest.raises(SettingError) as bad:
        monitoring.MonitoringArgs(
            project="p", name="n", namespace="ns", worker_selector={}, notification_channels=("on-call",)
        )
    assert "'on-call' is not a notification channel" in str(bad.value)
