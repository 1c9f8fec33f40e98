"""The scheduling framework: named extension points, small interfaces, plugins by type name.

Modelled on the Kubernetes scheduler framework and the inference extension's endpoint picker:

- ``DataProducer.produce``: per-request data for the other plugins (e.g. prefix matches),
  written into the request's :class:`CycleState`;
- ``Filter.filter``: candidates in, a subset out;
- ``Scorer.score``: a score in [0, 1] per candidate (weighted and summed by the profile);
- ``Picker.pick``: candidates ranked from scores; the first is the pick, the rest fallbacks;
- ``ProfileHandler``: which profiles run for a request and how their results combine;
- ``Admission.admit``: may reject a request before scheduling (flow control);
- ``PreRequest.pre_request``: after a pick, before the request is sent (record affinity);
- ``ResponseHook``: first token, completion or failure of a request on an endpoint.

A plugin class declares ``type_name`` and a pydantic ``Params`` model; the registry builds
instances from YAML by type name, so a policy is data. Candidates are numpy arrays of
endpoint indices into :class:`rastos.sched.fleet.FleetState`; scores are numpy arrays aligned
with them. Plugins must not mutate the fleet state; state they keep across requests (an
index, a session table, a counter) is theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from rastos.sched.fleet import FleetState
from rastos.sched.request import SchedRequest

__all__ = [
    "EXTENSION_POINTS",
    "Admission",
    "CycleState",
    "DataProducer",
    "Filter",
    "Picker",
    "Plugin",
    "PluginParams",
    "PreRequest",
    "ProfileHandler",
    "ProfileResult",
    "Rejection",
    "ResponseHook",
    "SchedulingResult",
    "Scorer",
    "register",
    "registry",
]


class PluginParams(BaseModel):
    """Base of every plugin's parameters: unknown keys are errors, names are camelCase."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CycleState(dict[str, Any]):
    """Scratch space of one scheduling cycle (one request), shared between plugins."""


class Plugin:
    """Base of all plugins. ``name`` is the instance name from the config."""

    type_name: ClassVar[str] = ""
    Params: ClassVar[type[PluginParams]] = PluginParams

    def __init__(self, name: str, params: PluginParams) -> None:
        self.name = name
        self.params = params

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class DataProducer(Plugin):
    def produce(self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float) -> None:
        raise NotImplementedError


class Filter(Plugin):
    def filter(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> np.ndarray:
        raise NotImplementedError


class Scorer(Plugin):
    category: ClassVar[str] = "Balance"  # Affinity | Distribution | Balance, as in the EPP

    def score(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, cycle: CycleState, now: float
    ) -> np.ndarray:
        raise NotImplementedError


class Picker(Plugin):
    def pick(
        self, req: SchedRequest, fleet: FleetState, cands: np.ndarray, scores: np.ndarray, cycle: CycleState
    ) -> np.ndarray:
        """Candidate endpoint indices in preference order (at least the pick)."""
        raise NotImplementedError


@dataclass(slots=True)
class Rejection:
    """An admission refusal: HTTP status, OpenAI-style message, a reason for headers/metrics."""

    status: int
    message: str
    reason: str
    retry_after: float | None = None


class Admission(Plugin):
    def admit(self, req: SchedRequest, fleet: FleetState, now: float) -> Rejection | None:
        raise NotImplementedError


class PreRequest(Plugin):
    def pre_request(self, req: SchedRequest, result: SchedulingResult, fleet: FleetState, now: float) -> None:
        raise NotImplementedError


class ResponseHook(Plugin):
    def on_first_token(self, req: SchedRequest, endpoint: int, now: float) -> None:
        """The endpoint produced the request's first token."""

    def on_complete(self, req: SchedRequest, endpoint: int, now: float, output_tokens: int) -> None:
        """The request finished successfully on the endpoint."""

    def on_failure(self, req: SchedRequest, endpoint: int, now: float) -> None:
        """The request failed on the endpoint (error status, broken connection)."""


@dataclass(slots=True)
class ProfileResult:
    profile: str
    ranked: np.ndarray  # endpoint indices, best first
    candidates: np.ndarray
    scores: np.ndarray  # aligned with candidates (weighted sum)
    per_scorer: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(slots=True)
class SchedulingResult:
    primary: str
    profiles: dict[str, ProfileResult]
    cycle: CycleState

    @property
    def ranked(self) -> np.ndarray:
        return self.profiles[self.primary].ranked

    @property
    def endpoint(self) -> int:
        return int(self.ranked[0])


class ProfileHandler(Plugin):
    def pick_profiles(self, req: SchedRequest, profiles: dict[str, Any], done: dict[str, ProfileResult]) -> list[str]:
        raise NotImplementedError

    def process_results(self, req: SchedRequest, done: dict[str, ProfileResult]) -> str:
        """The name of the primary profile."""
        raise NotImplementedError


EXTENSION_POINTS: dict[str, type[Plugin]] = {
    "producer": DataProducer,
    "filter": Filter,
    "scorer": Scorer,
    "picker": Picker,
    "profile-handler": ProfileHandler,
    "admission": Admission,
    "pre-request": PreRequest,
    "response-hook": ResponseHook,
}

_REGISTRY: dict[str, type[Plugin]] = {}
P = TypeVar("P", bound=type[Plugin])


def register(cls: P) -> P:
    """Class decorator: make a plugin type available to configs under its ``type_name``."""
    if not cls.type_name:
        raise ValueError(f"{cls.__name__} has no type_name")
    if cls.type_name in _REGISTRY and _REGISTRY[cls.type_name] is not cls:
        raise ValueError(f"plugin type {cls.type_name!r} registered twice")
    _REGISTRY[cls.type_name] = cls
    return cls


def registry() -> dict[str, type[Plugin]]:
    """All registered plugin types (importing the built-in plugin modules first)."""
    import rastos.sched.plugins  # noqa: F401  (registers the built-ins)

    return dict(_REGISTRY)


def extension_points(cls: type[Plugin]) -> list[str]:
    return [name for name, base in EXTENSION_POINTS.items() if issubclass(cls, base)]


Timer = Callable[[str, str, float], None]
