"""Small builders for scheduling tests."""

from __future__ import annotations

import numpy as np

from rastos.sched.config import build_scheduler
from rastos.sched.fleet import Endpoint, FleetState
from rastos.sched.framework import CycleState, registry
from rastos.sched.request import SchedRequest


def fleet(n: int, model: str = "m", **arrays: list[float]) -> FleetState:
    f = FleetState([Endpoint(f"http://10.0.0.{i}:8000", models=frozenset({model})) for i in range(n)])
    f.scraped_at[:] = 0.0
    for name, values in arrays.items():
        getattr(f, name)[:] = np.asarray(values)
    return f


def plugin(type_name: str, name: str | None = None, **params):
    cls = registry()[type_name]
    return cls(name or type_name, cls.Params.model_validate(params))


def request(hashes: list[int] | None = None, tokens: int | None = None, **kw) -> SchedRequest:
    hashes = hashes if hashes is not None else []
    return SchedRequest(
        request_id=kw.pop("request_id", "r"),
        model=kw.pop("model", "m"),
        prompt_tokens=tokens if tokens is not None else max(1, len(hashes) * 64),
        block_hashes=hashes,
        **kw,
    )


def prefix_cycle(matched: list[float], producer: str = "approx-prefix-cache-producer") -> CycleState:
    c = CycleState()
    c[f"prefix-match/{producer}"] = np.asarray(matched, dtype=float)
    return c


def scheduler(plugins: list[dict], profile: list[dict]):
    return build_scheduler({"plugins": plugins, "schedulingProfiles": [{"name": "p", "plugins": profile}]})
