"""Prometheus metrics, in a registry per app so that apps built by tests do not collide."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

from app.logs import dropped_lines

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    batch_size: Histogram
    model_version: Gauge
    model_events: Counter
    rejected: Counter
    shed: Counter
    queued: Gauge
    queued_work: Gauge
    database_up: Gauge
    log_lines_dropped: Gauge
    connections: Gauge
    connections_dropped: Counter


def create_metrics() -> Metrics:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return Metrics(
        registry=registry,
        requests=Counter(
            "http_requests", "HTTP requests answered", ["method", "route", "status"], registry=registry
        ),
        latency=Histogram(
            "http_request_duration_seconds",
            "Time to answer, by route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        batch_size=Histogram(
            "model_batch_size",
            "Requests merged into one model call (one observation per call)",
            ["kind"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        ),
        model_version=Gauge(
            "model_version_info", "1 for the bundle version being served", ["version"], registry=registry
        ),
        model_events=Counter(
            "model_events", "Bundle loads, swaps and refusals", ["event"], registry=registry
        ),
        queued=Gauge("model_queue_depth", "Requests waiting for a model call", ["kind"], registry=registry),
        queued_work=Gauge(
            "model_queue_work",
            "Work waiting for a model call: users (recommend), pairs (predict); admission counts it",
            ["kind"],
            registry=registry,
        ),
        rejected=Counter(
            "overload_rejections", "Requests answered 503 because the queue was full", registry=registry
        ),
        shed=Counter(
            "requests_shed",
            "Requests answered 503 by a limit: deadline (REQUEST_TIMEOUT_S), inflight_body_bytes",
            ["reason"],
            registry=registry,
        ),
        database_up=Gauge(
            "feedback_database_up", "1 while the feedback database answers, else 0", registry=registry
        ),
        log_lines_dropped=_log_lines_dropped(registry),
        connections=Gauge("http_connections", "Open client connections (this process)", registry=registry),
        connections_dropped=Counter(
            "http_connections_dropped",
            "Connections the server ended: idle_timeout, headers_timeout, body_timeout, "
            "header_too_large, evicted (MAX_CONNECTIONS), refused (none to evict)",
            ["reason"],
            registry=registry,
        ),
    )


def _log_lines_dropped(registry: CollectorRegistry) -> Gauge:
    gauge = Gauge(
        "log_lines_dropped",
        "Log lines dropped since start because the writer fell too far behind (see app.logs)",
        registry=registry,
    )
    gauge.set_function(lambda: float(dropped_lines()))
    return gauge
