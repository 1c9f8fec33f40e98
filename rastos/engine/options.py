"""Everything ``rastos sim-engine`` can be told, in one validated object.

The CLI, the tests and the demo all build a :class:`SimEngineOptions` and hand it to the
server; values left ``None`` fall back to the profile (itself vLLM's defaults for that GPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rastos.engine.core import EngineConfig
from rastos.engine.faults import FaultConfig
from rastos.engine.profile import EngineProfile, load_profile
from rastos.errors import ConfigError

__all__ = ["SimEngineOptions", "parse_lora_modules"]


def parse_lora_modules(specs: list[str]) -> dict[str, str]:
    """vLLM's ``--lora-modules name=path`` (or a bare name) into ``{name: path}``."""
    out: dict[str, str] = {}
    for spec in specs:
        for item in spec.split():
            name, _, path = item.partition("=")
            if not name:
                raise ConfigError(f"invalid --lora-modules entry {item!r}; expected name=path")
            out[name] = path or name
    return out


@dataclass
class SimEngineOptions:
    model: str = "meta-llama/Llama-3.1-8B-Instruct"
    served_model_name: str | None = None
    profile: str = "llama3-8b-h100"
    host: str = "127.0.0.1"
    port: int = 8000
    time_scale: float = 1.0
    engine_type: str = "vllm"
    seed: int = 0
    policy: str = "fcfs"
    enable_prefix_caching: bool = True
    hash_algo: str = "sha256"
    max_model_len: int | None = None
    num_gpu_blocks: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    block_size: int | None = None
    tokenizer: str | None = None
    chat_template: str | None = None
    lora_modules: dict[str, str] = field(default_factory=dict)
    max_loras: int = 1
    output_len_median: float = 256.0
    output_len_sigma: float = 0.8
    kv_events: str | None = None
    kv_events_replay: str | None = None
    kv_events_map_format: bool = False
    kv_events_bind: bool | None = None
    kv_events_topic: str | None = None
    legacy_metrics: bool = False
    startup_delay: float = 0.0
    faults: FaultConfig = field(default_factory=FaultConfig)

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.model

    def resolve_profile(self) -> EngineProfile:
        prof = load_profile(self.profile)
        return prof.with_overrides(
            max_model_len=self.max_model_len,
            num_gpu_blocks=self.num_gpu_blocks,
            max_num_seqs=self.max_num_seqs,
            max_num_batched_tokens=self.max_num_batched_tokens,
            block_size=self.block_size,
        )

    def engine_config(self) -> EngineConfig:
        if self.engine_type not in ("vllm", "sglang"):
            raise ConfigError(f"--engine-type must be vllm or sglang, not {self.engine_type!r}")
        if self.time_scale <= 0:
            raise ConfigError("--time-scale must be positive")
        try:
            return EngineConfig(
                profile=self.resolve_profile(),
                policy=self.policy,
                enable_prefix_caching=self.enable_prefix_caching,
                hash_algo=self.hash_algo,
                max_loras=self.max_loras,
                record_kv_events=self.kv_events is not None,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def kv_topic(self) -> str:
        """llm-d's topic convention ``kv@<host>:<port>@<model>`` unless given."""
        if self.kv_events_topic is not None:
            return self.kv_events_topic
        return f"kv@{self.host}:{self.port}@{self.model_name}"
