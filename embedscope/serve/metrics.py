"""Prometheus metrics (prometheus_client), including the hit rate of the query-embedding cache.

Each app gets its own CollectorRegistry, so several apps in one process (tests) do not collide.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from embedscope.encoders.base import Vectors
from embedscope.serve.cache import QueryCache

# the *_created timestamp series double the output and no dashboard here uses them
disable_created_metrics()

# latency buckets in seconds, dense around the 1-50 ms range the search path lives in
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    """Request counts, request latency per endpoint, latency per search stage, cache statistics."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, cache: QueryCache[Vectors]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "embedscope_requests", "HTTP requests", ["method", "endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "embedscope_request_seconds", "HTTP request latency", ["endpoint"], buckets=_BUCKETS, registry=r
        )
        self.stage = Histogram(
            "embedscope_stage_seconds",
            "Latency of one stage of a query: encode, search, rank",
            ["stage", "collection", "version"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.batch = Histogram(
            "embedscope_encode_batch_size",
            "Queries encoded together by the micro-batcher",
            buckets=(1, 2, 4, 8, 16, 32),
            registry=r,
        )
        hits = Gauge("embedscope_query_cache_hits", "Query-embedding cache hits", registry=r)
        hits.set_function(lambda: cache.hits)
        misses = Gauge("embedscope_query_cache_misses", "Query-embedding cache misses", registry=r)
        misses.set_function(lambda: cache.misses)
        rate = Gauge("embedscope_query_cache_hit_ratio", "Query-embedding cache hit rate", registry=r)
        rate.set_function(cache.hit_rate)
        size = Gauge("embedscope_query_cache_entries", "Query vectors held in the cache", registry=r)
        size.set_function(lambda: len(cache))

    def observe_request(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(method, endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_stages(self, collection: str, version: str, stages: dict[str, float]) -> None:
        for name, seconds in stages.items():
            self.stage.labels(name, collection, version).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
