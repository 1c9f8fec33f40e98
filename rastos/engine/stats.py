"""Counters and histograms an engine keeps as it steps, in plain data.

The engine records here and nothing else; ``rastos.engine.metrics`` turns the numbers into
vLLM's or SGLang's Prometheus names at scrape time. A histogram is a bucket array so that one
engine step can record, say, 300 equal inter-token gaps with one call instead of 300 (the
per-token ``observe`` of prometheus_client was the hot spot at high concurrency).
Bucket bounds are vLLM 0.33's (``vllm/v1/metrics/buckets.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rastos.common.histogram import Histogram

__all__ = [
    "FINE_LATENCY_BUCKETS",
    "ITERATION_TOKENS_BUCKETS",
    "ITL_BUCKETS",
    "REQUEST_LATENCY_BUCKETS",
    "TTFT_BUCKETS",
    "EngineStats",
    "Histogram",
    "token_buckets",
]

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
    60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
ITERATION_TOKENS_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
# Fine, log-spaced inter-token buckets (0.5 ms .. 20 s, 2.5 % apart) for reports' percentiles.
FINE_LATENCY_BUCKETS = tuple(0.0005 * 1.025**i for i in range(430))


def token_buckets(max_model_len: int) -> tuple[int, ...]:
    """vLLM's 1-2-5 series up to ``max_model_len`` for per-request token-count histograms."""
    out: list[int] = []
    mantissa = (1, 2, 5)
    exp = 1
    while True:
        for m in mantissa:
            v = m * exp
            if v > max_model_len:
                return tuple(out)
            out.append(v)
        exp *= 10


@dataclass
class EngineStats:
    """Everything an engine counts; read by the metrics exporter and the benchmarks."""

    max_model_len: int
    prompt_tokens: int = 0
    generation_tokens: int = 0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    num_preemptions: int = 0
    request_success: dict[str, int] = field(default_factory=lambda: {"stop": 0, "length": 0, "abort": 0, "error": 0})
    steps: int = 0
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    itl: Histogram = field(default_factory=lambda: Histogram(ITL_BUCKETS))
    itl_fine: Histogram = field(default_factory=lambda: Histogram(FINE_LATENCY_BUCKETS))
    tpot: Histogram = field(default_factory=lambda: Histogram(ITL_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(REQUEST_LATENCY_BUCKETS))
    queue_time: Histogram = field(default_factory=lambda: Histogram(REQUEST_LATENCY_BUCKETS))
    prefill_time: Histogram = field(default_factory=lambda: Histogram(REQUEST_LATENCY_BUCKETS))
    decode_time: Histogram = field(default_factory=lambda: Histogram(REQUEST_LATENCY_BUCKETS))
    inference_time: Histogram = field(default_factory=lambda: Histogram(REQUEST_LATENCY_BUCKETS))
    iteration_tokens: Histogram = field(default_factory=lambda: Histogram(ITERATION_TOKENS_BUCKETS))
    request_prompt_tokens: Histogram = field(init=False)
    request_generation_tokens: Histogram = field(init=False)
    request_num_preemptions: Histogram = field(default_factory=lambda: Histogram((0, 1, 2, 5, 10, 20, 50)))

    def __post_init__(self) -> None:
        self.request_prompt_tokens = Histogram(token_buckets(self.max_model_len))
        self.request_generation_tokens = Histogram(token_buckets(self.max_model_len))

    @property
    def prefix_hit_rate(self) -> float:
        return self.prefix_cache_hits / self.prefix_cache_queries if self.prefix_cache_queries else 0.0
