"""Prometheus exposition of an engine's state under vLLM's or SGLang's exact metric names.

Metrics are read from the engine at scrape time by one custom collector (no per-step gauge
updates on the hot path). Names, label sets and buckets are those of vLLM 0.33
(``vllm/v1/metrics/loggers.py``): per-engine series carry ``model_name`` and ``engine``;
``vllm:cache_config_info`` carries the cache config as labels plus ``engine``;
``vllm:lora_requests_info`` carries ``max_lora``, ``waiting_lora_adapters`` and
``running_lora_adapters`` with the Unix time of the last change as value, a new series each
time the lists change. ``--engine-type sglang`` switches to SGLang's names
(``sglang:num_queue_reqs``, ``sglang:num_running_reqs``, ``sglang:token_usage``,
``sglang:cache_config_info{page_size,num_pages}``, ...). ``legacy=True`` adds the deprecated
vLLM names some older consumers still scrape (``vllm:gpu_cache_usage_perc``, ...).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from rastos.engine.core import EngineCore
from rastos.engine.stats import Histogram

__all__ = ["CONTENT_TYPE_LATEST", "EngineMetrics"]


def _gauge(name: str, doc: str, labels: list[str], values: list[str], value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=labels)
    g.add_metric(values, value)
    return g


def _counter(name: str, doc: str, labels: list[str], values: list[str], value: float) -> CounterMetricFamily:
    c = CounterMetricFamily(name, doc, labels=labels)
    c.add_metric(values, value)
    return c


def _hist(name: str, doc: str, labels: list[str], values: list[str], h: Histogram) -> HistogramMetricFamily:
    m = HistogramMetricFamily(name, doc, labels=labels)
    m.add_metric(values, h.cumulative(), h.sum)
    return m


class EngineMetrics:
    """Renders ``/metrics`` for one engine."""

    def __init__(
        self,
        engine: EngineCore,
        model_name: str,
        engine_type: str = "vllm",
        *,
        lora_enabled: bool = False,
        legacy: bool = False,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if engine_type not in ("vllm", "sglang"):
            raise ValueError(f"engine type must be 'vllm' or 'sglang', not {engine_type!r}")
        self.engine = engine
        self.model_name = model_name
        self.engine_type = engine_type
        self.lora_enabled = lora_enabled
        self.legacy = legacy
        self._wall = wall_clock
        self._lora_series: dict[tuple[str, str, str], float] = {}
        self._last_lora_key: tuple[str, str, str] | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # type: ignore[arg-type]

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # prometheus_client collector protocol
    def collect(self) -> Iterator[Metric]:
        if self.engine_type == "sglang":
            yield from self._collect_sglang()
        else:
            yield from self._collect_vllm()

    def describe(self) -> list[Metric]:
        return []

    # ------------------------------------------------------------------ vLLM
    def _collect_vllm(self) -> Iterator[Metric]:
        eng = self.engine
        st = eng.stats
        p = eng.profile
        L = ["model_name", "engine"]
        V = [self.model_name, "0"]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return _gauge(name, doc, L, V, value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return _counter(name, doc, L, V, value)

        waiting = eng.num_waiting
        deferred = eng.num_deferred
        yield gauge("vllm:num_requests_running", "Number of requests in model execution batches.", eng.num_running)
        yield gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", waiting)
        g = GaugeMetricFamily(
            "vllm:num_requests_waiting_by_reason", "Number of requests waiting, by reason.", labels=[*L, "reason"]
        )
        g.add_metric([*V, "capacity"], waiting - deferred)
        g.add_metric([*V, "deferred"], deferred)
        yield g
        usage = eng.kv.usage
        yield gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", usage)
        g = GaugeMetricFamily("vllm:engine_sleep_state", "Engine sleep state.", labels=[*L, "sleep_state"])
        g.add_metric([*V, "awake"], 1)
        g.add_metric([*V, "weights_offloaded"], 0)
        g.add_metric([*V, "discard_all"], 0)
        yield g
        cfg = GaugeMetricFamily("vllm:cache_config_info", "Information of the LLMEngine CacheConfig", labels=[
            "block_size", "cache_dtype", "calculate_kv_scales", "enable_prefix_caching", "engine",
            "gpu_memory_utilization", "hash_block_size", "is_attention_free", "kv_cache_size_tokens",
            "num_cpu_blocks", "num_gpu_blocks", "num_gpu_blocks_override", "prefix_caching_hash_algo",
            "sliding_window", "swap_space",
        ])  # fmt: skip
        cfg.add_metric([
            str(p.block_size), "auto", "False", str(eng.config.enable_prefix_caching), "0",
            str(p.gpu_memory_utilization), str(p.block_size), "False", str(p.kv_cache_tokens),
            "0", str(p.num_gpu_blocks), "None", eng.config.hash_algo, "None", "4",
        ], 1.0)  # fmt: skip
        yield cfg
        if self.lora_enabled:
            yield self._lora_info()

        yield counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            st.prefix_cache_queries,
        )
        yield counter(
            "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", st.prefix_cache_hits
        )
        yield counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", st.num_preemptions)
        yield counter("vllm:prompt_tokens", "Number of prefill tokens processed.", st.prompt_tokens)
        yield counter("vllm:generation_tokens", "Number of generation tokens processed.", st.generation_tokens)
        c = CounterMetricFamily(
            "vllm:request_success", "Count of successfully processed requests.", labels=[*L, "finished_reason"]
        )
        for reason, n in st.request_success.items():
            c.add_metric([*V, reason], n)
        yield c
        yield _hist("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", L, V, st.ttft)
        yield _hist("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", L, V, st.itl)
        yield _hist(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            L,
            V,
            st.tpot,
        )
        yield _hist("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", L, V, st.e2e)
        yield _hist(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            L,
            V,
            st.queue_time,
        )
        yield _hist(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            L,
            V,
            st.prefill_time,
        )
        yield _hist(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            L,
            V,
            st.decode_time,
        )
        yield _hist(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            L,
            V,
            st.inference_time,
        )
        yield _hist("vllm:request_prompt_tokens", "Number of prefill tokens processed.", L, V, st.request_prompt_tokens)
        yield _hist(
            "vllm:request_generation_tokens",
            "Number of generation tokens processed.",
            L,
            V,
            st.request_generation_tokens,
        )
        yield _hist(
            "vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", L, V, st.iteration_tokens
        )
        yield _hist(
            "vllm:request_num_preemptions", "Number of preemptions per request.", L, V, st.request_num_preemptions
        )
        if self.legacy:
            yield gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", usage)
            yield counter(
                "vllm:gpu_prefix_cache_queries", "GPU prefix cache queries (deprecated).", st.prefix_cache_queries
            )
            yield counter("vllm:gpu_prefix_cache_hits", "GPU prefix cache hits (deprecated).", st.prefix_cache_hits)
            yield _hist(
                "vllm:time_per_output_token_seconds", "Histogram of time per output token (deprecated).", L, V, st.itl
            )

    def _lora_info(self) -> GaugeMetricFamily:
        eng = self.engine
        running = sorted({r.lora_name for r in eng.running if r.lora_name})
        waiting = sorted({r.lora_name for r in eng.waiting if r.lora_name})
        key = (str(eng.config.max_loras), ",".join(waiting), ",".join(running))
        if key != self._last_lora_key:
            self._lora_series[key] = self._wall()
            self._last_lora_key = key
        g = GaugeMetricFamily(
            "vllm:lora_requests_info",
            "Running stats on lora requests.",
            labels=["max_lora", "waiting_lora_adapters", "running_lora_adapters"],
        )
        for k, ts in self._lora_series.items():
            g.add_metric(list(k), ts)
        return g

    # ------------------------------------------------------------------ SGLang
    def _collect_sglang(self) -> Iterator[Metric]:
        eng = self.engine
        st = eng.stats
        p = eng.profile
        L = ["model_name"]
        V = [self.model_name]

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return _gauge(name, doc, L, V, value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return _counter(name, doc, L, V, value)

        used_tokens = eng.kv.num_used_blocks * p.block_size
        total_tokens = (p.num_gpu_blocks - 1) * p.block_size
        yield gauge("sglang:num_running_reqs", "The number of running requests.", eng.num_running)
        yield gauge("sglang:num_queue_reqs", "The number of requests in the waiting queue.", eng.num_waiting)
        yield gauge("sglang:num_used_tokens", "The number of used tokens.", used_tokens)
        yield gauge("sglang:token_usage", "The token usage.", eng.kv.usage)
        yield gauge("sglang:max_total_num_tokens", "Maximum total number of tokens in the KV cache pool.", total_tokens)
        yield gauge("sglang:cache_hit_rate", "The prefix cache hit rate.", st.prefix_hit_rate)
        cfg = GaugeMetricFamily(
            "sglang:cache_config_info", "Cache configuration information.", labels=[*L, "page_size", "num_pages"]
        )
        cfg.add_metric([*V, str(p.block_size), str(p.num_gpu_blocks)], 1.0)
        yield cfg
        yield counter("sglang:prompt_tokens", "Number of prefill tokens processed.", st.prompt_tokens)
        yield counter("sglang:generation_tokens", "Number of generation tokens processed.", st.generation_tokens)
        yield counter("sglang:cached_tokens", "Number of cached prompt tokens.", st.prefix_cache_hits)
        yield counter("sglang:num_requests", "Number of requests processed.", sum(st.request_success.values()))
        yield counter("sglang:num_retracted_requests", "Number of retracted requests.", st.num_preemptions)
        yield _hist("sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.", L, V, st.ttft)
        yield _hist("sglang:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", L, V, st.itl)
        yield _hist(
            "sglang:e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds", L, V, st.e2e
        )
        yield _hist("sglang:queue_time_seconds", "Histogram of queueing time in seconds.", L, V, st.queue_time)
