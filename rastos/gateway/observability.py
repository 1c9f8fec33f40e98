"""The gateway's Prometheus metrics, named after the llm-d endpoint picker's.

Canonical ``llm_d_epp_`` names where the EPP has a counterpart (request totals and errors,
TTFT/TPOT seen at the gateway, input/output tokens, running requests, scheduler and
per-plugin latency, prefix-index size and hit ratio, pool averages); ``rastos_`` names for
what it lacks (endpoint health, retries, requests per endpoint). Values are kept as plain
counters and bucket histograms and exported at scrape time by one collector.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from rastos.common.histogram import Histogram
from rastos.engine.stats import ITL_BUCKETS, REQUEST_LATENCY_BUCKETS, TTFT_BUCKETS, token_buckets

if TYPE_CHECKING:
    from rastos.gateway.datalayer import DataLayer
    from rastos.sched.scheduler import Scheduler

__all__ = ["GatewayStats"]

_TOKEN_BUCKETS = token_buckets(1_000_000)


class GatewayStats:
    """Counters the request path updates, and the collector that exports them."""

    def __init__(self, data: DataLayer, scheduler: Scheduler) -> None:
        self.data = data
        self.scheduler = scheduler
        self.requests: dict[tuple[str, str], int] = defaultdict(int)
        self.errors: dict[tuple[str, str, str], int] = defaultdict(int)
        self.per_endpoint: list[int] = [0] * len(data.fleet)
        self.retries = 0
        self.ttft: dict[bool, Histogram] = {True: Histogram(TTFT_BUCKETS), False: Histogram(TTFT_BUCKETS)}
        self.tpot = Histogram(ITL_BUCKETS)
        self.duration = Histogram(REQUEST_LATENCY_BUCKETS)
        self.input_tokens = Histogram(_TOKEN_BUCKETS)
        self.output_tokens = Histogram(_TOKEN_BUCKETS)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # type: ignore[arg-type]

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        fleet = self.data.fleet
        c = CounterMetricFamily("llm_d_epp_request", "Requests received.", labels=["model_name", "target_model_name"])
        for (m, t), n in self.requests.items():
            c.add_metric([m, t], n)
        yield c
        c = CounterMetricFamily(
            "llm_d_epp_request_error", "Requests that failed.", labels=["model_name", "target_model_name", "error_code"]
        )
        for (m, t, code), n in self.errors.items():
            c.add_metric([m, t, code], n)
        yield c
        g = GaugeMetricFamily("llm_d_epp_request_running", "Requests in flight through the gateway.")
        g.add_metric([], float(fleet.inflight_reqs.sum()))
        yield g
        h = HistogramMetricFamily("llm_d_epp_request_ttft_seconds", "Time to first token seen at the gateway.",
                                  labels=["streaming"])  # fmt: skip
        for streaming, hist in self.ttft.items():
            h.add_metric([str(streaming).lower()], hist.cumulative(), hist.sum)
        yield h
        yield _hist("llm_d_epp_request_streaming_tpot_seconds", "Time per output token of streamed responses.",
                    self.tpot)  # fmt: skip
        yield _hist("llm_d_epp_request_duration_seconds", "End-to-end request latency at the gateway.", self.duration)
        yield _hist("llm_d_epp_request_input_tokens", "Estimated prompt tokens per request.", self.input_tokens)
        yield _hist("llm_d_epp_request_output_tokens", "Output tokens per request.", self.output_tokens)
        t = self.scheduler.timings
        yield _hist("llm_d_epp_scheduler_e2e_duration_seconds", "Scheduling decision latency.", t.e2e)
        h = HistogramMetricFamily("llm_d_epp_plugin_duration_seconds", "Per-plugin latency.",
                                  labels=["extension_point", "plugin_type", "plugin_name"])  # fmt: skip
        for (point, ptype, pname), hist in t.by_plugin.items():
            h.add_metric([point, ptype, pname], hist.cumulative(), hist.sum)
        yield h
        prod = self.scheduler.prefix_producer()
        if prod is not None:
            yield _gauge("llm_d_epp_prefix_indexer_size", "Block hashes in the prefix index.", len(prod.index))
            yield _gauge("llm_d_epp_prefix_indexer_hit_ratio", "Share of looked-up blocks found in the index.",
                         prod.index.hit_ratio)  # fmt: skip
        n = len(fleet)
        yield _gauge("llm_d_epp_ready_endpoints", "Healthy endpoints.", float(fleet.healthy.sum()))
        yield _gauge("llm_d_epp_average_kv_cache_utilization", "Mean KV-cache use over endpoints.",
                     float(fleet.kv_usage.mean()) if n else 0.0)  # fmt: skip
        yield _gauge("llm_d_epp_average_queue_size", "Mean waiting requests over endpoints.",
                     float(fleet.queue.mean()) if n else 0.0)  # fmt: skip
        q = GaugeMetricFamily(
            "llm_d_epp_per_endpoint_queue_size", "Waiting requests per endpoint.", labels=["endpoint"]
        )
        hl = GaugeMetricFamily("rastos_endpoint_healthy", "1 if the endpoint is in rotation.", labels=["endpoint"])
        rq = CounterMetricFamily("rastos_endpoint_requests", "Requests sent per endpoint.", labels=["endpoint"])
        for ep in fleet.endpoints:
            q.add_metric([ep.name], float(fleet.queue[ep.index]))
            hl.add_metric([ep.name], 1.0 if fleet.healthy[ep.index] else 0.0)
            rq.add_metric([ep.name], self.per_endpoint[ep.index] if ep.index < len(self.per_endpoint) else 0)
        yield q
        yield hl
        yield rq
        c = CounterMetricFamily("rastos_upstream_retries", "Requests retried on another endpoint.")
        c.add_metric([], self.retries)
        yield c


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], value)
    return g


def _hist(name: str, doc: str, h: Histogram) -> HistogramMetricFamily:
    m = HistogramMetricFamily(name, doc)
    m.add_metric([], h.cumulative(), h.sum)
    return m
