"""Prometheus metrics (prometheus_client), in a registry of the app's own: requests by route and
status, latency, requests in flight, tokens counted, compressions and tokens saved. With
--workers N each worker process answers /metrics for itself."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "omnitok_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "omnitok_http_request_duration_seconds",
            "Time from request to response",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("omnitok_http_requests_in_flight", "Requests being answered", registry=r)
        self.tokens = Counter("omnitok_tokens_counted", "Tokens counted", ["model", "strategy"], registry=r)
        self.texts = Counter("omnitok_texts_counted", "Texts and records counted", ["model"], registry=r)
        self.compressions = Counter("omnitok_compressions", "Contexts compressed", ["model"], registry=r)
        self.tokens_saved = Counter("omnitok_compress_tokens_saved", "Tokens removed by compression", registry=r)

        self._children: dict = {}  # labels -> the metric children they name, looked up once

    def _child(self, key: tuple):
        child = self._children.get(key)
        if child is None:
            kind, *labels = key
            if kind == "request":
                method, route, status = labels
                child = (self.requests.labels(method, route, status), self.latency.labels(method, route))
            else:
                model, strategy = labels
                child = (self.tokens.labels(model, strategy), self.texts.labels(model))
            self._children[key] = child
        return child

    def answered(self, method: str, route: str, status: int, seconds: float) -> None:
        """One request answered: counted by (method, route, status), timed by (method, route)."""
        requests, latency = self._child(("request", method, route, str(status)))
        requests.inc()
        latency.observe(seconds)

    def counted(self, model: str, strategy: str, tokens: int, texts: int) -> None:
        count, number = self._child(("count", model, strategy))
        count.inc(tokens)
        number.inc(texts)

    def render(self) -> bytes:
        return generate_latest(self.registry)
