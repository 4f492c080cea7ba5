"""Traces with OpenTelemetry, opt-in: a span for each GCS and Firestore call and each chord step.

::

    pip install './celery-gcs[otel]'   # from a checkout (no release is on PyPI)
    celery -A proj worker --include=celery_gcs.telemetry.traces
    # in a client: import celery_gcs.telemetry.traces (or call setup())

Importing the module calls ``setup()``: unless the app set a tracer provider
already, one exporting over OTLP (``OTEL_EXPORTER_OTLP_ENDPOINT``, the
standard variables; ``OTEL_SERVICE_NAME`` names the service), then Celery's
own instrumentation (opentelemetry-instrumentation-celery: a span per task
published and run, the context carried in the message), then an observer of
``celery_gcs.observe`` that makes a span of each call to Google and each
chord step, under the task span it happens in. So one trace holds a chord
from the client's publish through every part's run, its counting in
Firestore, its results in GCS and the callback published and run.
docs/observability.md says how to send them to Cloud Trace.
"""

from __future__ import annotations

import os
from typing import Any

from ..install import require_extra

require_extra(
    "otel",
    ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http", "opentelemetry.instrumentation.celery"),
    __name__,
)

from opentelemetry import context, trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import observe

#: The name of this library's tracer (``instrumentation scope`` in the trace).
TRACER = "celery_gcs"


class SpanObserver:
    """A span per call to Google (CLIENT) and per chord step (INTERNAL); chord events on the current span."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def start(self, kind: str) -> tuple[trace.Span, object]:
        service = kind.partition(".")[0]
        span = self._tracer.start_span(
            kind,
            kind=SpanKind.INTERNAL if service == "chord" else SpanKind.CLIENT,
            attributes={} if service == "chord" else {"rpc.system": service, "celery_gcs.request": kind},
        )
        return span, context.attach(trace.set_span_in_context(span))

    def end(self, token: Any, kind: str, outcome: str, seconds: float, error: BaseException | None) -> None:
        span, attached = token
        span.set_attribute("celery_gcs.outcome", outcome)
        if outcome == observe.ERROR and error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()
        context.detach(attached)

    def event(self, name: str) -> None:
        trace.get_current_span().add_event(name)


observer: SpanObserver | None = None


def setup(provider: Any = None) -> SpanObserver:
    """Trace with ``provider`` (default: the global one, else an OTLP exporter); idempotent."""
    global observer
    if provider is None and not _provider_set():
        provider = _otlp_provider()
    if provider is not None and not _provider_set():
        trace.set_tracer_provider(provider)
    tracer_provider = provider or trace.get_tracer_provider()
    CeleryInstrumentor().instrument(tracer_provider=tracer_provider)
    if observer is not None:
        observe.remove(observer)
    observer = SpanObserver(trace.get_tracer(TRACER, tracer_provider=tracer_provider))
    observe.add(observer)
    return observer


def _provider_set() -> bool:
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _otlp_provider() -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The SDK's batch processor restarts its thread in each forked pool process.
    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "celery")}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


setup()
