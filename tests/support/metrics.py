"""Worker metrics read as a scraper reads them: over HTTP, parsed by prometheus-client."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample the worker serves, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict, series: str, **labels: str) -> float:
    """The sum of ``series`` over the samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(value for (name, have), value in samples.items() if name == series and wanted <= have)
