"""The server's metrics, in Prometheus' text format at TF Serving's path (/monitoring/prometheus/metrics).

    gemstone_requests_total{model, version, verb, status}     requests answered (status: the HTTP code)
    gemstone_request_latency_seconds{model, verb}             histogram, from the request line to the answer
    gemstone_answers_total{model, version, variety}           photos answered, by the variety named
    gemstone_needs_review_total{model, version, reason}       photos whose answer needs review, by reason
    gemstone_requests_in_flight                               requests the model is working on
    gemstone_rejected_busy_total                              requests turned away with 503 (too many in flight)
    gemstone_client_disconnects_total                         clients gone before their answer was written

`verb`: predict, explain, status, metadata, gallery, page, metrics or other; `version` is empty
when the request failed before one was chosen. Each server has its own registry.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Tuple

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)

from gemstone import contract

disable_created_metrics()  # no `_created` series beside each counter: a scrape shows what TF Serving's does
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServingMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("gemstone_requests", "Requests answered, by model, version, verb and HTTP status",
                                ("model", "version", "verb", "status"), registry=self.registry)
        self.latency = Histogram("gemstone_request_latency_seconds", "Seconds from request to answer",
                                 ("model", "verb"), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.answers = Counter("gemstone_answers", "Photos answered, by the variety named",
                               ("model", "version", "variety"), registry=self.registry)
        self.needs_review = Counter("gemstone_needs_review", "Photos whose answer needs review, by reason",
                                    ("model", "version", "reason"), registry=self.registry)
        self.in_flight = Gauge("gemstone_requests_in_flight", "Requests the model is working on",
                               registry=self.registry)
        self.rejected_busy = Counter("gemstone_rejected_busy", "Requests turned away (503) with too many in flight",
                                     registry=self.registry)
        self.disconnects = Counter("gemstone_client_disconnects", "Clients gone before their answer was written",
                                   registry=self.registry)

    def request(self, model: str, version: str, verb: str, status: int, seconds: float) -> None:
        self.requests.labels(model, version, verb, str(int(status))).inc()
        self.latency.labels(model, verb).observe(seconds)

    def answered(self, model: str, version: str, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            self.answers.labels(model, version, record["label"]).inc()
            if record.get("needs_review"):
                reason = record.get("review_reason") or contract.LOW_CONFIDENCE  # models before the open set
                self.needs_review.labels(model, version, reason).inc()

    def exposition(self) -> Tuple[bytes, str]:
        """(body, content type) of the metrics page."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
