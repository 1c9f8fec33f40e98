"""Scheduler configuration: policies are data, assembled into a :class:`Scheduler`.

The format follows the endpoint picker's ``EndpointPickerConfig``::

    plugins:                       # named plugin instances (name defaults to type)
      - name: prefix
        type: approx-prefix-cache-producer
        parameters: {blockSizeTokens: 64}
      - type: prefill-cost-scorer
      - type: max-score-picker
    schedulingProfiles:
      - name: default
        plugins:                   # filters, scorers (with weights) and one picker
          - pluginRef: prefill-cost-scorer
            weight: 1

Producers, admission plugins, pre-request and response hooks act globally once declared.
Defaults are injected as the EPP does: a producer a scorer reads, ``max-score-picker`` in a
profile without a picker, ``single-profile-handler`` with one profile. Every error names the
offending field (``schedulingProfiles[0].plugins[1].pluginRef: no plugin named 'x'``).

Built-in policies are YAML files in ``rastos/sched/policies``; ``load_policy`` takes a name
or a path.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rastos.errors import ConfigError
from rastos.sched.framework import (
    Admission,
    DataProducer,
    Filter,
    Picker,
    Plugin,
    PreRequest,
    ProfileHandler,
    ResponseHook,
    Scorer,
    extension_points,
    registry,
)
from rastos.sched.scheduler import Scheduler, SchedulerProfile

__all__ = ["SchedulerConfig", "build_scheduler", "list_policies", "load_policy", "policy_text"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PluginSpec(_Strict):
    type: str
    name: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)


class ProfilePluginRef(_Strict):
    pluginRef: str
    weight: float = Field(default=1.0, ge=0)


class ProfileSpec(_Strict):
    name: str
    plugins: list[ProfilePluginRef] = Field(default_factory=list)


class SchedulerConfig(_Strict):
    apiVersion: str | None = None
    kind: str | None = None
    featureGates: list[str] = Field(default_factory=list)
    plugins: list[PluginSpec] = Field(default_factory=list)
    schedulingProfiles: list[ProfileSpec] = Field(min_length=1)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _errors(exc: ValidationError, prefix: str = "") -> str:
    msgs = []
    for e in exc.errors(include_url=False):
        where = _loc(tuple(e["loc"]))
        msgs.append(f"{prefix}{'.' if prefix and not where.startswith('[') else ''}{where}: {e['msg']}")
    return "; ".join(msgs)


# A scorer or filter reading prefix matches needs this producer (injected when absent).
_NEEDS_PREFIX = {
    "prefix-cache-scorer",
    "prefill-cost-scorer",
    "saturation-aware-affinity-scorer",
    "prefix-cache-affinity-filter",
    "no-hit-lru-scorer",
    "sglang-cache-aware-picker",
    "dynamo-kv-scorer",
    "aibrix-prefix-cache-picker",
}


def build_scheduler(
    data: dict[str, Any] | SchedulerConfig, *, where: str = "scheduler", name: str = "custom"
) -> Scheduler:
    """Validate a config and assemble the scheduler; raises :class:`ConfigError`."""
    try:
        cfg = data if isinstance(data, SchedulerConfig) else SchedulerConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid scheduler config in {where}: {_errors(exc)}") from None
    types = registry()
    specs = list(cfg.plugins)
    declared = {s.type for s in specs}
    referenced = {s.type for s in specs}
    if referenced & _NEEDS_PREFIX and "approx-prefix-cache-producer" not in declared:
        specs.append(PluginSpec(type="approx-prefix-cache-producer"))

    instances: dict[str, Plugin] = {}
    for i, spec in enumerate(specs):
        field = f"plugins[{i}]"
        cls = types.get(spec.type)
        if cls is None:
            raise ConfigError(
                f"{where}: {field}.type: unknown plugin type {spec.type!r}; known: {', '.join(sorted(types))}"
            )
        pname = spec.name or spec.type
        if pname in instances:
            raise ConfigError(f"{where}: {field}.name: plugin name {pname!r} is used twice")
        try:
            params = cls.Params.model_validate(spec.parameters)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {_errors(exc, f'{field}.parameters')}") from None
        try:
            instances[pname] = cls(pname, params)
        except ValueError as exc:
            raise ConfigError(f"{where}: {field}.parameters: {exc}") from None

    profiles: dict[str, SchedulerProfile] = {}
    for pi, prof in enumerate(cfg.schedulingProfiles):
        field = f"schedulingProfiles[{pi}]"
        if prof.name in profiles:
            raise ConfigError(f"{where}: {field}.name: profile {prof.name!r} is defined twice")
        filters: list[Filter] = []
        scorers: list[tuple[Scorer, float]] = []
        picker: Picker | None = None
        for ri, ref in enumerate(prof.plugins):
            rfield = f"{field}.plugins[{ri}].pluginRef"
            plugin = instances.get(ref.pluginRef)
            if plugin is None:
                raise ConfigError(f"{where}: {rfield}: no plugin named {ref.pluginRef!r}")
            used = False
            if isinstance(plugin, Filter):
                filters.append(plugin)
                used = True
            if isinstance(plugin, Scorer):
                scorers.append((plugin, ref.weight))
                used = True
            if isinstance(plugin, Picker):
                if picker is not None:
                    raise ConfigError(f"{where}: {rfield}: profile {prof.name!r} has two pickers")
                picker = plugin
                used = True
            if not used:
                raise ConfigError(
                    f"{where}: {rfield}: {ref.pluginRef!r} is a {'/'.join(extension_points(type(plugin)))} plugin; "
                    "a profile takes filters, scorers and one picker"
                )
        if picker is None:
            picker = types["max-score-picker"](f"{prof.name}/max-score-picker", types["max-score-picker"].Params())
        profiles[prof.name] = SchedulerProfile(prof.name, filters, scorers, picker)

    handlers = [p for p in instances.values() if isinstance(p, ProfileHandler)]
    if len(handlers) > 1:
        raise ConfigError(f"{where}: plugins: more than one profile handler ({', '.join(h.name for h in handlers)})")
    if handlers:
        handler = handlers[0]
    elif len(profiles) == 1:
        handler = types["single-profile-handler"]("single-profile-handler", types["single-profile-handler"].Params())
    else:
        raise ConfigError(f"{where}: plugins: {len(profiles)} profiles need a profile handler plugin")
    vals = list(instances.values())
    return Scheduler(
        profiles,
        handler,  # type: ignore[arg-type]
        producers=[p for p in vals if isinstance(p, DataProducer)],
        admissions=[p for p in vals if isinstance(p, Admission)],
        pre_requests=[p for p in vals if isinstance(p, PreRequest)],
        response_hooks=[p for p in vals if isinstance(p, ResponseHook)],
        plugins=instances,
        name=name,
    )


def list_policies() -> list[str]:
    root = resources.files("rastos.sched") / "policies"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def policy_text(name_or_path: str) -> tuple[str, str]:
    """``(yaml text, where)`` of a built-in policy name or a YAML file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"policy file {name_or_path} does not exist")
        return path.read_text(), str(path)
    res = resources.files("rastos.sched") / "policies" / f"{name_or_path}.yaml"
    if not res.is_file():
        raise ConfigError(f"unknown policy {name_or_path!r}; built-in policies: {', '.join(list_policies())}")
    return res.read_text(), f"policy {name_or_path!r}"


def load_policy(name_or_path: str, overrides: dict[str, Any] | None = None) -> Scheduler:
    """Build a fresh scheduler (fresh plugin state) from a built-in policy or a YAML file.

    A file may hold the scheduler config itself or a gateway config with a ``scheduler`` key.
    """
    text, where = policy_text(name_or_path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {where}: {exc}") from None
    if isinstance(data, dict) and "scheduler" in data and "schedulingProfiles" not in data:
        data = data["scheduler"]
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with schedulingProfiles")
    if overrides:
        data = {**data, **overrides}
    name = Path(name_or_path).stem if name_or_path.endswith((".yaml", ".yml")) else name_or_path
    return build_scheduler(data, where=where, name=name)
