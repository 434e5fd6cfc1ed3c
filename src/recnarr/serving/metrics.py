"""Prometheus metrics in the text exposition format (version 0.0.4), written by hand: three metric
kinds, a few dozen lines, no extra dependency. Thread-safe (the model worker records too).

HTTP metrics are labelled with the route *template* (`/v1/users/{user_id}/history`), never the raw
path, so no id ends up in a label; requests that match no route count as `unmatched`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RATE_BUCKETS = (1, 5, 10, 25, 50, 100, 200, 400, 800, 1600)

DOC_PATHS = frozenset({"/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"})
access_log = logging.getLogger("recnarr.serving.access")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x))


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()):
        self.name, self.help, self.labelnames = name, help, tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.labelnames)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()):
        super().__init__(name, help, labelnames)
        self._values: dict[tuple[str, ...], float] = {} if labelnames else {(): 0.0}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter only goes up (got {amount})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.labelnames, k)} {_num(v)}" for k, v in items]


class Gauge(_Metric):
    """A gauge read from a function at scrape time."""

    kind = "gauge"

    def __init__(self, name: str, help: str, read: Callable[[], float]):
        super().__init__(name, help)
        self.read = read

    def render(self) -> list[str]:
        return self.header() + [f"{self.name} {_num(self.read())}"]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = (), buckets: Iterable[float] = LATENCY_BUCKETS):
        super().__init__(name, help, labelnames)
        self.buckets = tuple(sorted(float(b) for b in buckets)) + (math.inf,)
        self._series: dict[tuple[str, ...], list[float]] = {}  # bucket counts..., sum, count

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            s = self._series.setdefault(key, [0.0] * (len(self.buckets) + 2))
            for i, b in enumerate(self.buckets):
                if value <= b:
                    s[i] += 1  # cumulative: every bucket whose bound holds the value
            s[-2] += value
            s[-1] += 1

    def count(self, **labels: str) -> float:
        s = self._series.get(self._key(labels))
        return s[-1] if s else 0.0

    def render(self) -> list[str]:
        lines = self.header()
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        for key, s in items:
            for b, c in zip(self.buckets, s, strict=False):
                le = 'le="' + _num(b) + '"'
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {_num(c)}")
            lines.append(f"{self.name}_sum{_labels(self.labelnames, key)} {_num(s[-2])}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, key)} {_num(s[-1])}")
        return lines


class Metrics:
    """Every metric the service exposes."""

    def __init__(self, prefix: str = "recnarr"):
        p = prefix
        self.http_requests = Counter(f"{p}_http_requests_total", "HTTP requests by method, route template and status.",
                                     ("method", "route", "status"))
        self.http_latency = Histogram(f"{p}_http_request_duration_seconds",
                                      "Time from request to the last byte of the response, by route template.",
                                      ("method", "route"))
        self.stage_seconds = Histogram(f"{p}_recommendation_stage_seconds",
                                       "Seconds per recommendation stage (queue wait, retrieval, generate, verify, "
                                       "total).", ("stage",))
        self.tokens = Counter(f"{p}_generated_tokens_total", "Narrative tokens generated (every attempt).")
        self.generate_seconds = Counter(f"{p}_generate_seconds_total",
                                        "Seconds spent generating (prefill + decode); tokens_total / this = tokens/s.")
        self.tokens_per_second = Histogram(f"{p}_tokens_per_second", "Generation speed per request (tokens/s).",
                                           buckets=RATE_BUCKETS)
        self.narratives = Counter(f"{p}_narratives_total",
                                  "Narratives returned: verified (first try or after retries) or the flagged "
                                  "fallback.", ("outcome",))
        self.verifier_failures = Counter(f"{p}_verifier_failures_total",
                                         "Sentences rejected while decoding: sampled again (strained or failing the "
                                         "verifier) or left out.")
        self.fallbacks = Counter(f"{p}_fallbacks_total",
                                 "Requests answered with the plain factual fallback: no verified sentence named "
                                 "the product.")
        self.rejected = Counter(f"{p}_rejected_requests_total",
                                "Generation requests refused at once (queue full, model not ready).", ("reason",))
        self.timeouts = Counter(f"{p}_request_timeouts_total", "Generation requests that ran past the timeout.")
        self.gauges: list[Gauge] = []

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.gauges.append(Gauge(name, help, read))

    def observe_result(self, result: Any, queue_s: float) -> None:
        """Record a generator Result (recnarr.inference.contract.Result)."""
        self.stage_seconds.observe(queue_s, stage="queue")
        for stage in ("retrieval", "generate", "verify", "total"):
            if stage in result.timings:
                self.stage_seconds.observe(float(result.timings[stage]), stage=stage)
        n = result.narrative
        if n is None:
            return
        generated, gen_s = int(result.tokens.get("generated", 0)), float(result.timings.get("generate", 0.0))
        self.tokens.inc(generated)
        self.generate_seconds.inc(gen_s)
        if gen_s > 0 and generated:
            self.tokens_per_second.observe(generated / gen_s)
        failed = n.attempts - 1 + sum(e.startswith("left out:") for e in n.errors)
        if failed > 0:
            self.verifier_failures.inc(failed)
        if n.fallback:
            self.fallbacks.inc()
        self.narratives.inc(outcome="fallback" if n.fallback else ("verified_retry" if n.attempts > 1 else "verified"))

    def render(self) -> str:
        metrics: list[Any] = [self.http_requests, self.http_latency, self.stage_seconds, self.tokens,
                              self.generate_seconds, self.tokens_per_second, self.narratives,
                              self.verifier_failures, self.fallbacks, self.rejected, self.timeouts, *self.gauges]
        return "\n".join(line for m in metrics for line in m.render()) + "\n"


class MetricsMiddleware:
    """Counts and times every HTTP request (streams until their last byte), and writes one access-log
    line per request: method, route template, status, milliseconds. Never the path, query or body."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or (
                scope["path"] if scope["path"] in DOC_PATHS else "unmatched")  # docs routes leave no template
            took = time.perf_counter() - start
            self.metrics.http_requests.inc(method=scope["method"], route=template, status=str(status))
            self.metrics.http_latency.observe(took, method=scope["method"], route=template)
            access_log.info("%s %s %d %.1fms", scope["method"], template, status, took * 1000)
