"""The digital twin: a discrete-event simulation of a fleet behind the real scheduler.

Virtual time; one event heap. Events: request arrivals (open-loop, or a follow-up turn after
its parent finishes and the user thinks), engine step ends, and metric scrapes. On arrival the
request is analysed as the gateway would (token-id prompt hashed in 64-token blocks), admitted
and scheduled by the very ``Scheduler`` the gateway runs, with the same in-flight accounting
(``InflightAccounting``), and handed to the chosen engine model (``EngineCore``, the sim
engine's state machine). The router sees engine metrics only as scraped every
``scrape_interval`` (plus ``scrape_lag``), like the live gateway.

Engines step in virtual time; pure-decode stretches run as one event (``coalesce``), cut short
when a request arrives at that engine, so a run's cost grows with events, not tokens.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np

from rastos.engine.coalesce import DecodeRun, apply_decode_run, kv_usage_during, plan_decode_run
from rastos.engine.core import EngineConfig, EngineCore, StepOutput, StepPlan
from rastos.engine.kv_cache import set_request_keys
from rastos.engine.polyhash import prefix_hashes
from rastos.engine.profile import EngineProfile
from rastos.engine.request import EngineRequest
from rastos.sched.accounting import InflightAccounting, Ticket
from rastos.sched.fleet import Endpoint, FleetState
from rastos.sched.request import SchedRequest
from rastos.sched.scheduler import NoCandidates, Scheduler
from rastos.twin.ceiling import PooledCeiling
from rastos.twin.records import RequestRecord, SimResult
from rastos.workload.model import OutputTokens, WorkloadRequest, output_token_list, output_tokens

__all__ = ["RequestRecord", "SimResult", "Simulation", "TwinConfig"]

_ARRIVE, _STEP, _SCRAPE = 0, 1, 2
_PROGRESS_EVERY = 256  # arrivals per progress callback: a bar update costs microseconds


_outputs = output_token_list


def _ints(hashes: list[int] | np.ndarray) -> list[int]:
    return hashes.tolist() if isinstance(hashes, np.ndarray) else hashes


@dataclass
class TwinConfig:
    endpoints: int
    profile: EngineProfile
    scrape_interval: float = 0.05
    scrape_lag: float = 0.0
    coalesce: bool = True
    hash_algo: str = "poly64"  # the engines' block hash: vectorised (see rastos.engine.polyhash)
    policy: str = "fcfs"
    model: str = "model"
    sample_interval: float = 1.0  # per-endpoint load samples for plots
    seed: int = 0  # seeds the scheduler's random choices (tie-breaks, sampling pickers)
    pooled_ceiling: bool = True  # also run one fleet-sized LRU cache over the stream


class _Engine:
    """One engine model with its step-in-flight state."""

    __slots__ = ("core", "index", "plan", "run", "run_k", "step_end", "version")

    def __init__(self, core: EngineCore, index: int) -> None:
        self.core = core
        self.index = index
        self.plan: StepPlan | None = None
        self.run: DecodeRun | None = None
        self.run_k = 0
        self.step_end = math.inf
        self.version = 0

    @property
    def busy(self) -> bool:
        return self.plan is not None or self.run is not None


class Simulation:
    """Runs one workload through one scheduler over a simulated fleet."""

    def __init__(
        self,
        cfg: TwinConfig,
        scheduler: Scheduler,
        workload: Iterable[WorkloadRequest],
        *,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.scheduler = scheduler
        scheduler.reseed(cfg.seed)
        self.fleet = FleetState(
            [
                Endpoint(f"http://twin-{i}:8000", name=f"twin-{i}", models=frozenset({cfg.model}))
                for i in range(cfg.endpoints)
            ]
        )
        p = cfg.profile
        econf = EngineConfig(profile=p, policy=cfg.policy, hash_algo=cfg.hash_algo)
        self.engines = [_Engine(EngineCore(econf), i) for i in range(cfg.endpoints)]
        for i in range(cfg.endpoints):
            self.fleet.set_cache_info(i, p.block_size, p.num_gpu_blocks)
        self.accounting = InflightAccounting(self.fleet, scheduler)
        self.block_tokens = scheduler.block_tokens or 64
        self.hasher = self.engines[0].core.hasher if self.engines else None  # one algorithm and seed fleet-wide
        # The router's blocks as whole runs of engine blocks: its chained hashes are then every
        # k-th engine hash (same prefix, same identity), no second pass over the prompt.
        self._router_stride = self.block_tokens // p.block_size if self.block_tokens % p.block_size == 0 else 0
        self._heap: list[tuple[float, int, int, object]] = []
        self._seq = itertools.count()
        self._workload: Iterator[WorkloadRequest] = iter(workload)
        self._children: dict[int, list[WorkloadRequest]] = {}
        self._alive: set[int] = set()  # admitted or held follow-ups, not yet finished
        self._pending = 0  # non-scrape events in the heap
        self.records: list[RequestRecord] = []
        self._tickets: dict[int, tuple[Ticket, SchedRequest, RequestRecord]] = {}
        self.on_progress = on_progress
        self._unreported = 0
        self.now = 0.0
        self.load_samples: list[tuple[float, list[int]]] = []
        self.routed_blocks = 0
        self.ceiling = PooledCeiling((p.num_gpu_blocks - 1) * cfg.endpoints) if cfg.pooled_ceiling else None

    # ------------------------------------------------------------------ events
    def _push(self, t: float, kind: int, payload: object) -> None:
        if kind != _SCRAPE:
            self._pending += 1
        heapq.heappush(self._heap, (t, kind, next(self._seq), payload))

    def _next_open_arrival(self) -> None:
        """Pull the workload up to the next open-loop arrival.

        Contract: a follow-up comes after its parent in the workload's order (generators put
        it right behind). It is held until the parent finishes, then arrives ``think_time``
        later; if the parent is rejected or dropped, so is the rest of the conversation.
        """
        for w in self._workload:
            if w.parent is not None:
                if w.parent in self._alive:
                    self._children.setdefault(w.parent, []).append(w)
                    self._alive.add(w.id)
                else:
                    self._record_dropped(w)
                continue
            self._push(w.arrival, _ARRIVE, w)
            return

    def run(self) -> SimResult:
        cfg = self.cfg
        for i in range(cfg.endpoints):  # staggered scrape phases, as independent pollers
            self._push(cfg.scrape_interval * (i + 0.5) / cfg.endpoints, _SCRAPE, i)
        self._next_open_arrival()
        next_sample = 0.0
        heap = self._heap
        # Millions of long-lived objects (records, cached blocks) and no reference cycles on the
        # hot path: collect rarely, else the cyclic GC's full passes grow with the run.
        thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(200_000, 50, 100)
        try:
            self._loop(heap, next_sample)
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()
        if self._unreported and self.on_progress is not None:
            self.on_progress(self._unreported)
            self._unreported = 0
        return SimResult(
            self.records,
            [e.core for e in self.engines],
            self.now,
            self.load_samples,
            self.routed_blocks,
            self.ceiling.rate if self.ceiling is not None else None,
        )

    def _loop(self, heap: list, next_sample: float) -> None:
        cfg = self.cfg
        while heap:
            t, kind, _, payload = heapq.heappop(heap)
            self.now = t
            if kind != _SCRAPE:
                self._pending -= 1
            if kind == _STEP:
                e, version = payload  # type: ignore[misc]
                if version == e.version:
                    self._step_end(e)
            elif kind == _ARRIVE:
                w: WorkloadRequest = payload  # type: ignore[assignment]
                self._arrive(w)
                if w.parent is None:
                    self._next_open_arrival()
            else:
                i: int = payload  # type: ignore[assignment]
                if self._pending:  # scrapes go on while anything can still happen
                    self._scrape(i)
                    self._push(t + cfg.scrape_interval, _SCRAPE, i)
                if t >= next_sample and cfg.sample_interval > 0:
                    self.load_samples.append((t, [e.core.num_running + e.core.num_waiting for e in self.engines]))
                    next_sample = t + cfg.sample_interval

    # ------------------------------------------------------------------ scraping
    def _scrape(self, i: int) -> None:
        e = self.engines[i]
        core = e.core
        f = self.fleet
        f.queue[i] = core.num_waiting
        f.running[i] = core.num_running
        f.kv_usage[i] = core.kv.usage if e.run is None else kv_usage_during(core, e.run, self.now)
        f.scraped_at[i] = self.now - self.cfg.scrape_lag

    # ------------------------------------------------------------------ arrivals
    def _arrive(self, w: WorkloadRequest) -> None:
        now = self.now
        rec = RequestRecord(w.id, -1, now, prompt_tokens=w.prompt_tokens, tenant=w.tenant, priority=w.priority)
        self.records.append(rec)
        self._alive.discard(w.id)  # re-added once admitted
        self._unreported += 1
        if self._unreported >= _PROGRESS_EVERY and self.on_progress is not None:
            self.on_progress(self._unreported)
            self._unreported = 0
        prompt = w.prompt
        p = self.cfg.profile
        if w.prompt_tokens == 0 or w.prompt_tokens + w.max_tokens > p.max_model_len:
            rec.status = "rejected"
            self._drop_children(w.id)
            return
        engine_hashes = None
        prompt_blocks = w.prompt_tokens // p.block_size
        if self.hasher is not None and self.engines[0].core.config.enable_prefix_caching:
            # Hashes ahead: the twin's outputs are a pure function of (request, position), so the
            # blocks the answer will complete are hashed now with the prompt, in one vectorised
            # pass, instead of one by one as decoding completes them. The engine reads a
            # request's hashes only up to its computed tokens, so this changes no result.
            tokens = np.concatenate((prompt, output_tokens(w.id, 0, w.max_tokens)))
            engine_hashes = self.hasher.hash_blocks_array(tokens, w.lora)  # poly64: kept as an array
            if engine_hashes is None:
                engine_hashes = self.hasher.hash_blocks(tokens, 0, None, w.lora)
        if not self.scheduler.block_tokens:
            router_hashes = []
        elif engine_hashes is not None and self._router_stride and w.lora is None:
            k = self._router_stride
            router_hashes = engine_hashes[k - 1 : min(k * 2048, prompt_blocks) : k]
            if isinstance(router_hashes, np.ndarray):  # one contiguous copy: the prefix index uses it as is
                router_hashes = np.ascontiguousarray(router_hashes)
        else:
            router_hashes = prefix_hashes(prompt, self.block_tokens, 2048)
        req = SchedRequest(
            request_id=str(w.id),
            model=w.model if w.model in self.fleet.known_models() else self.cfg.model,
            prompt_tokens=w.prompt_tokens,
            block_hashes=router_hashes,
            block_tokens=self.block_tokens,
            lora=w.lora,
            tenant=w.tenant,
            session_id=w.session,
            priority=w.priority,
            max_tokens=w.max_tokens,
            stream=True,
            arrival=now,
        )
        rej = self.scheduler.admit(req, self.fleet, now)
        if rej is not None:
            rec.status = "dropped"
            self._drop_children(w.id)
            return
        try:
            result = self.scheduler.schedule(req, self.fleet, now)
        except NoCandidates:
            rec.status = "dropped"
            self._drop_children(w.id)
            return
        self.scheduler.pre_request(req, result, self.fleet, now)
        ep = result.endpoint
        rec.endpoint = ep
        self.routed_blocks += len(req.block_hashes)
        ticket = self.accounting.start(req, result, ep)
        ereq = EngineRequest(
            str(w.id),
            prompt,
            w.max_tokens,
            priority=-w.priority,  # vLLM: lower is served first; ours: higher is more important
            lora_name=w.lora,
            next_token=OutputTokens(w.id),
            arrival_time=now,
            user_data=w,
        )
        if isinstance(engine_hashes, np.ndarray):
            set_request_keys(ereq, engine_hashes)
        else:
            ereq.block_hashes = engine_hashes
        ereq.output_token_ids = None  # outputs are a function of the position: count only
        ereq.token_fn = partial(_outputs, w.id)
        self._tickets[w.id] = (ticket, req, rec)
        self._alive.add(w.id)
        e = self.engines[ep]
        self._sync_for_arrival(e)
        e.core.add_request(ereq)
        if self.ceiling is not None and ereq.block_hashes is not None:
            self.ceiling.lookup_and_insert(_ints(ereq.block_hashes[:prompt_blocks]), w.prompt_tokens, p.block_size)
        if not e.busy:
            self._start_step(e, now)

    def _record_dropped(self, w: WorkloadRequest) -> None:
        self.records.append(RequestRecord(w.id, -1, self.now, prompt_tokens=w.prompt_tokens, tenant=w.tenant,
                                          priority=w.priority, status="dropped"))  # fmt: skip

    def _drop_children(self, wid: int) -> None:
        self._alive.discard(wid)
        for child in self._children.pop(wid, []):
            self._record_dropped(child)
            self._drop_children(child.id)

    # ------------------------------------------------------------------ engine stepping
    def _sync_for_arrival(self, e: _Engine) -> None:
        """A request joins engine ``e`` now: cut its decode run at the next step boundary."""
        run = e.run
        if run is None:
            return
        k = run.steps_to_reach(self.now)
        if k < e.run_k:
            e.run_k = k
            e.step_end = run.end(k)
            e.version += 1
            self._push(e.step_end, _STEP, (e, e.version))

    def _start_step(self, e: _Engine, now: float) -> None:
        core = e.core
        if self.cfg.coalesce:
            run = plan_decode_run(core, now)
            if run is not None:
                e.run, e.run_k, e.plan = run, run.k_max, None
                e.step_end = run.end(run.k_max)
                e.version += 1
                self._push(e.step_end, _STEP, (e, e.version))
                return
        plan = core.schedule(now)
        if plan is None:
            e.plan = e.run = None
            e.step_end = math.inf
            return
        e.plan, e.run = plan, None
        e.step_end = plan.end
        e.version += 1
        self._push(plan.end, _STEP, (e, e.version))

    def _step_end(self, e: _Engine) -> None:
        now = self.now
        core = e.core
        if e.run is not None:
            out = apply_decode_run(core, e.run, e.run_k)
            e.run = None
        else:
            assert e.plan is not None
            out = core.finish_step(e.plan, now)
            e.plan = None
            self._first_tokens(out, now)
        self._finishes(out, now)
        self._start_step(e, now)

    def _first_tokens(self, out: StepOutput, now: float) -> None:
        tickets = self._tickets
        for r in out.first_token_reqs:
            if r.first_token_time == now:
                item = tickets.get(r.user_data.id)
                if item is not None and item[0].prefilling:
                    ticket, req, rec = item
                    self.accounting.first_token(ticket)
                    self.scheduler.first_token(req, ticket.endpoint, now)
                    rec.first_token = now
                    rec.cached_tokens = max(r.num_cached_tokens, 0)

    def _finishes(self, out: StepOutput, now: float) -> None:
        for r in out.finished:
            w: WorkloadRequest = r.user_data
            ticket, req, rec = self._tickets.pop(w.id)
            if ticket.prefilling:  # finished in the step of its first token
                self.accounting.first_token(ticket)
                rec.first_token = r.first_token_time
                rec.cached_tokens = max(r.num_cached_tokens, 0)
            self.accounting.end(ticket)
            self.scheduler.complete(req, ticket.endpoint, now, r.num_output_tokens)
            rec.finish = now
            rec.output_tokens = r.num_output_tokens
            rec.queue_time = r.first_scheduled_time - r.arrival_time
            rec.preemptions = r.num_preemptions
            if math.isnan(rec.first_token):
                rec.first_token = r.first_token_time
            self._alive.discard(w.id)
            if self.ceiling is not None and r.block_hashes is not None and len(r.block_hashes):
                bs = self.cfg.profile.block_size
                self.ceiling.insert(_ints(r.block_hashes[w.prompt_tokens // bs : r.num_tokens // bs]))
            for child in self._children.pop(w.id, []):
                self._push(now + child.think_time, _ARRIVE, child)
