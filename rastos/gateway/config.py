"""Gateway configuration: where to listen, which endpoints, how to watch them, how to pick.

A YAML file (``rastos serve --config FILE``)::

    gateway:
      port: 8080
      scrape_interval_ms: 50
    endpoints:
      - url: http://10.0.0.1:8000
        models: [meta-llama/Llama-3.1-8B-Instruct]   # optional: discovered from /v1/models
        engine_type: vllm                            # vllm | sglang
        labels: {zone: a}
        role: both                                   # both | prefill | decode
    policy: default          # a built-in policy name or a path ...
    scheduler: {...}         # ... or an inline EndpointPickerConfig (wins over policy)

Errors name the field (``endpoints[1].url: ...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rastos.errors import ConfigError

__all__ = ["EndpointSpec", "GatewayConfig", "GatewaySettings", "load_gateway_config", "quick_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EndpointSpec(_Strict):
    url: str
    name: str | None = None
    models: list[str] = Field(default_factory=list)
    engine_type: Literal["vllm", "sglang"] = "vllm"
    labels: dict[str, str] = Field(default_factory=dict)
    role: Literal["both", "prefill", "decode"] = "both"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")) or len(v.split("://", 1)[1].strip("/")) == 0:
            raise ValueError("must be an http:// or https:// URL with a host")
        return v.rstrip("/")


class GatewaySettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    scrape_interval_ms: float = Field(default=50, gt=0, le=60_000)
    staleness_threshold_ms: float = Field(default=2000, gt=0)
    health_check_interval_ms: float = Field(default=1000, gt=0)
    health_timeout_ms: float = Field(default=1000, gt=0)
    eject_after_failures: int = Field(default=3, ge=1)
    max_retries: int = Field(default=2, ge=0, le=10)
    connect_timeout_ms: float = Field(default=2000, gt=0)
    request_timeout_s: float = Field(default=3600, gt=0)
    max_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    debug_headers: bool = False
    discover_models: bool = True
    bytes_per_token: float = Field(default=4.0, gt=0)


class GatewayConfig(_Strict):
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    endpoints: list[EndpointSpec] = Field(min_length=1)
    policy: str = "default"
    scheduler: dict[str, Any] | None = None


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def validate_gateway_config(data: Any, where: str) -> GatewayConfig:
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        msgs = "; ".join(f"{_where(tuple(e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
        raise ConfigError(f"invalid gateway config {where}: {msgs}") from None


def load_gateway_config(path: str | Path) -> GatewayConfig:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {p}: {exc}") from None
    return validate_gateway_config(data, str(p))


def quick_config(endpoints: str, policy: str = "default", port: int = 8080, host: str = "127.0.0.1") -> GatewayConfig:
    """``rastos serve --endpoints http://a:1,http://b:2 --policy NAME`` as a config."""
    urls = [u.strip() for u in endpoints.split(",") if u.strip()]
    return validate_gateway_config(
        {"gateway": {"port": port, "host": host}, "endpoints": [{"url": u} for u in urls], "policy": policy},
        "from the command line",
    )
