"""GPU/model profiles: the data that makes a simulated engine behave like one real deployment.

A profile is a YAML data file (capacity, scheduler limits and the step-time constants of the
calibration note), never code, so a new GPU or model is added without touching the engine.
The step-time model is the one of ``shared/reference/engine-calibration.md`` §5.4::

    t_step = t_over + max(t_w, N·t_tok) + C_dec·t_kv + Σ_i c_i·(ctx_i + c_i/2)·t_attn

``N`` is the number of tokens scheduled in the step, ``C_dec`` the context length summed over
decoding sequences, and ``(c_i, ctx_i)`` each prefill chunk with the context already computed
before it. The weight-read floor ``t_w`` counts once per step, which is what makes batching pay.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rastos.errors import ConfigError

__all__ = ["EngineProfile", "LoraCost", "StepTimeModel", "list_profiles", "load_profile"]


class StepTimeModel(BaseModel):
    """Constants of the per-step cost model (milliseconds / microseconds as named)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    t_over_ms: float = Field(ge=0)
    t_w_ms: float = Field(ge=0)
    t_tok_us: float = Field(ge=0)
    t_kv_us: float = Field(ge=0)
    t_attn_ms: float = Field(ge=0)

    def step_seconds(self, num_tokens: int, decode_ctx: int, prefill_attn: float) -> float:
        """Duration of one engine step in seconds.

        ``prefill_attn`` is Σ c_i·(ctx_i + c_i/2) over the prefill chunks of the step, so that
        the caller accumulates it while it builds the batch and this stays O(1).
        """
        ms = (
            self.t_over_ms
            + max(self.t_w_ms, num_tokens * self.t_tok_us * 1e-3)
            + decode_ctx * self.t_kv_us * 1e-3
            + prefill_attn * self.t_attn_ms
        )
        return ms * 1e-3


class LoraCost(BaseModel):
    """What serving LoRA adapters costs: a load into a GPU slot and a per-step overhead."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    load_ms: float = Field(default=25.0, ge=0)
    step_overhead_frac: float = Field(default=0.08, ge=0)


class EngineProfile(BaseModel):
    """One model on one GPU deployment, as vLLM would configure it by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    model: str
    gpu: str
    tensor_parallel_size: int = Field(default=1, ge=1)
    max_model_len: int = Field(gt=0)
    block_size: int = Field(default=16, gt=0)
    num_gpu_blocks: int = Field(gt=1)
    max_num_batched_tokens: int = Field(default=8192, gt=0)
    max_num_seqs: int = Field(default=1024, gt=0)
    gpu_memory_utilization: float = Field(default=0.92, gt=0, le=1)
    kv_bytes_per_token: int = Field(default=131072, gt=0)
    step: StepTimeModel
    lora: LoraCost = LoraCost()

    @property
    def kv_cache_tokens(self) -> int:
        """Tokens the KV pool holds (vLLM logs this as ``GPU KV cache size``)."""
        return self.num_gpu_blocks * self.block_size

    def with_overrides(self, **overrides: object) -> EngineProfile:
        """A copy with some fields replaced (CLI flags win over the profile file)."""
        data = self.model_dump()
        data.update({k: v for k, v in overrides.items() if v is not None})
        return _validate(data, f"profile {self.name!r} with overrides")


def _validate(data: object, where: str) -> EngineProfile:
    try:
        return EngineProfile.model_validate(data)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid engine profile in {where}: {errors}") from None


def list_profiles() -> list[str]:
    """Names of the profiles shipped with rastos."""
    root = resources.files("rastos.engine") / "profiles"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_profile(name_or_path: str) -> EngineProfile:
    """Load a built-in profile by name, or a profile YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text = path.read_text()
        where = str(path)
    else:
        res = resources.files("rastos.engine") / "profiles" / f"{name_or_path}.yaml"
        if not res.is_file():
            raise ConfigError(
                f"unknown engine profile {name_or_path!r}; built-in profiles: {', '.join(list_profiles())}"
            )
        text = res.read_text()
        where = f"built-in profile {name_or_path!r}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {where}: {exc}") from None
    return _validate(data, where)
