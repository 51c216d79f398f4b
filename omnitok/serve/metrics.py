"""Prometheus metrics (prometheus_client), in a registry of the app's own: requests by route and
status, latency, requests in flight, tokens counted, compressions and tokens saved. With
--workers N each worker process answers /metrics for itself.

Every label value is one of a set fixed by the server, never what a client sent (Prometheus keeps
a series per value: client-chosen values would grow /metrics and the scraper without bound).
Models: the ids of omnitok's family tables and the server's default model as they are; any other
id as its family (`family:claude`, `family:hf`); `other` when none resolves it. Strategies: the
names of omnitok's strategies, else `other`. Routes: the app's route templates, `unmatched` for
the rest (Guard). Methods: the HTTP methods the app knows, else `other`."""

from __future__ import annotations

import functools

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
OTHER = "other"
# The `name` of every counting strategy omnitok has (tokenizers/, families/), the `strategy` of
# every provider (remote/providers.py: what an online count reports), and the batch summary's "mixed".
STRATEGIES = frozenset(
    {
        "tiktoken",
        "gigatoken",
        "tokenizers",
        "sentencepiece",
        "transformers",
        "hf-tokenizer",
        "heuristic",
        "claude-calibrated",
        "gemma-sentencepiece",
        "anthropic",
        "gemini",
        "vllm",
        "self-hosted",
        "bedrock",
        "anthropic-api",
        "gemini-api",
        "vllm-api",
        "self-hosted-api",
        "bedrock-api",
        "mixed",
    }
)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ID_KINDS = ("id", "bedrock id")  # the family tables' rows that name one model (not a pattern)


@functools.lru_cache(maxsize=1)
def known_models() -> frozenset[str]:
    """The model ids of omnitok's family tables (`omnitok models`)."""
    from ..api import model_families

    return frozenset(row["model"] for fam in model_families() for row in fam["models"] if row.get("kind") in _ID_KINDS)


@functools.lru_cache(maxsize=4096)  # bounded: a flood of new ids costs a resolve each, never memory
def _family_label(model: str) -> str:
    from ..api import resolve

    try:
        return f"family:{resolve(model).family}"
    except Exception:  # an id nothing resolves: it was never counted, but never a label either
        return OTHER


class _Bounded:
    """A labelled metric whose label values go through `bound` first (.labels(...) as
    prometheus_client's)."""

    def __init__(self, metric, bound):
        self.metric = metric
        self.bound = bound

    def labels(self, *values):
        return self.metric.labels(*self.bound(*values))


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, default_model: str | None = None):
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
        # Requests being answered: a plain number the event loop's thread keeps (Guard, the fast
        # path), read when /metrics is rendered.
        self.in_flight = 0
        Gauge("omnitok_http_requests_in_flight", "Requests being answered", registry=r).set_function(
            lambda: self.in_flight
        )
        self.tokens = Counter("omnitok_tokens_counted", "Tokens counted", ["model", "strategy"], registry=r)
        self.texts = Counter("omnitok_texts_counted", "Texts and records counted", ["model"], registry=r)
        self.compressions = _Bounded(
            Counter("omnitok_compressions", "Contexts compressed", ["model"], registry=r),
            lambda model: (self.model_label(model),),
        )
        self.tokens_saved = Counter("omnitok_compress_tokens_saved", "Tokens removed by compression", registry=r)
        self._models = set(known_models())
        self.keep_model(default_model)
        self._children: dict = {}  # bounded labels -> the metric children they name, looked up once
        self.before_read: list = []  # called before render() (omnitok.serve.fast hands its counts)

    def keep_model(self, model: str | None) -> None:
        """Label `model` (the server's default model) as itself; None: the library's default."""
        from ..api import default_model

        self._models.add(model if model else default_model())

    def model_label(self, model) -> str:
        if model in self._models:
            return model
        if not isinstance(model, str) or not model:
            return OTHER
        return _family_label(model) if len(model) <= 256 else _family_label.__wrapped__(model)

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

    def request_series(self, method: str, route: str, status: int) -> tuple:
        """(requests counter, latency histogram) for (method, route, status): answered() without
        the look-up, for a caller that answers one kind of request many times (the fast path)."""
        method = method if method in METHODS else OTHER
        return self._child(("request", method, route, str(status)))

    def answered(self, method: str, route: str, status: int, seconds: float) -> None:
        """One request answered: counted by (method, route, status), timed by (method, route)."""
        requests, latency = self.request_series(method, route, status)
        requests.inc()
        latency.observe(seconds)

    def count_series(self, model: str, strategy: str) -> tuple:
        """(tokens counter, texts counter) for (model, strategy), labels bounded as counted() bounds them."""
        strategy = strategy if strategy in STRATEGIES else OTHER
        return self._child(("count", self.model_label(model), strategy))

    def counted(self, model: str, strategy: str, tokens: int, texts: int) -> None:
        count, number = self.count_series(model, strategy)
        count.inc(tokens)
        number.inc(texts)

    def render(self) -> bytes:
        for flush in self.before_read:
            flush()
        return generate_latest(self.registry)
