"""Traces (the otel extra): one trace from a client's chord through a worker's parts, their GCS and Firestore calls, to the callback."""

from __future__ import annotations

import pytest
from celery import chord
from celery.contrib.testing.worker import start_worker
from celery_gcs import observe
from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture(scope="module")
def spans():
    """OpenTelemetry's in-memory exporter behind the global provider, then traces turned on."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    from celery_gcs.telemetry import traces  # importing it sets tracing up, on the global provider

    yield exporter
    observe.remove(traces.observer)
    CeleryInstrumentor().uninstrument()


def test_a_chord_is_one_trace_from_the_client_to_its_callback(make_app, spans) -> None:
    app = make_app()

    @app.task(name="traced.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="traced.tsum")
    def tsum(values: list[int]) -> int:
        return sum(values)

    spans.clear()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        with trace.get_tracer("test").start_as_current_span("client") as root:
            result = chord([add.s(n, n) for n in range(3)])(tsum.s())
        assert result.get(timeout=60) == 6

    finished = spans.get_finished_spans()
    in_trace = [span for span in finished if span.context.trace_id == root.get_span_context().trace_id]
    named = {span.name for span in in_trace}
    # Celery's spans: the client's publishes, each part's run, the callback published by a part and run.
    assert {"apply_async/traced.add", "run/traced.add", "apply_async/traced.tsum", "run/traced.tsum"} <= named
    # Ours, in the same trace: the chord's steps, and the calls to Google under them.
    assert {"chord.apply", "chord.count", "chord.settle", "chord.gather", "chord.publish"} <= named
    assert {"gcs.write", "gcs.read", "firestore.commit", "firestore.transaction"} <= named
    assert sum(span.name == "chord.count" for span in in_trace) == 3

    by_id = {span.context.span_id: span for span in in_trace}

    def ancestors(span) -> list[str]:
        found = []
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            found.append(span.name)
        return found

    for span in in_trace:
        if span.name == "firestore.commit" and "chord.count" in ancestors(span):
            assert "run/traced.add" in ancestors(span)
    publish = next(span for span in in_trace if span.name == "chord.publish")
    assert ancestors(publish)[:1] != [] and "run/traced.add" in ancestors(publish)
    callback = next(span for span in in_trace if span.name == "apply_async/traced.tsum")
    assert "chord.publish" in ancestors(callback)
    assert all(span.attributes.get("celery_gcs.outcome") in ("ok", "refused") for span in in_trace if span.name.startswith(("gcs.", "firestore.")))
