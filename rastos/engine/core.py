"""The engine model: vLLM v1's continuous-batching scheduler as a pure state machine.

No asyncio, no clocks: a driver calls ``schedule(now)`` to form the next batch (which says how
long it will run on the GPU) and ``finish_step(plan, end)`` when that time has passed, real or
virtual. The real-time server and the discrete-event twin step the very same object.

Scheduling follows ``vllm/v1/core/sched/scheduler.py``: one token budget
(``max_num_batched_tokens``) per step; running requests first, each taking what it needs to
catch up (1 token when decoding, a chunk when prefilling); then waiting requests in policy
order (``fcfs`` or ``priority``, lower value first) while the budget and ``max_num_seqs``
allow, each starting from its longest prefix-cache hit. Out of KV blocks, the victim (last
running request, or the lowest-priority one) is preempted by recompute: its blocks are
freed (full ones stay cached) and it goes back to the front of the waiting queue.
No waiting request is admitted in a step that preempted. LoRA adapters obey ``max_loras``.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass, field

from rastos.engine.hashing import BlockHasher
from rastos.engine.kv_cache import KVCacheManager, KVEvent
from rastos.engine.profile import EngineProfile
from rastos.engine.request import EngineRequest, RequestStatus
from rastos.engine.stats import EngineStats
from rastos.engine.waiting import WaitingQueue

__all__ = ["EngineConfig", "EngineCore", "StepOutput", "StepPlan", "WaitingQueue"]


@dataclass(frozen=True)
class EngineConfig:
    """How one engine is set up: a profile plus the knobs vLLM takes on its command line."""

    profile: EngineProfile
    policy: str = "fcfs"
    enable_prefix_caching: bool = True
    hash_algo: str = "sha256"
    max_loras: int = 1
    record_kv_events: bool = False

    def __post_init__(self) -> None:
        if self.policy not in ("fcfs", "priority"):
            raise ValueError(f"scheduling policy must be 'fcfs' or 'priority', not {self.policy!r}")
        if self.max_loras < 1:
            raise ValueError("max_loras must be at least 1")


@dataclass(slots=True)
class StepPlan:
    """One batch: who runs, how many tokens each, and how long the GPU takes."""

    start: float
    duration: float
    reqs: list[EngineRequest]
    num_tokens: int
    num_prefill_tokens: int
    num_decode_reqs: int

    @property
    def end(self) -> float:
        return self.start + self.duration


@dataclass(slots=True)
class StepOutput:
    """What a finished step produced."""

    new_token_reqs: list[EngineRequest] = field(default_factory=list)
    finished: list[EngineRequest] = field(default_factory=list)
    first_token_reqs: list[EngineRequest] = field(default_factory=list)


class EngineCore:
    """Continuous batching with chunked prefill, paged KV and prefix caching."""

    def __init__(self, config: EngineConfig) -> None:
        p = config.profile
        self.config = config
        self.profile = p
        self.block_size = p.block_size
        self.max_num_batched_tokens = p.max_num_batched_tokens
        self.max_num_seqs = p.max_num_seqs
        self.max_model_len = p.max_model_len
        if p.max_model_len > (p.num_gpu_blocks - 1) * p.block_size:
            raise ValueError(
                f"max_model_len {p.max_model_len} is larger than the KV cache holds "
                f"({(p.num_gpu_blocks - 1) * p.block_size} tokens); lower it or add blocks"
            )
        self.kv = KVCacheManager(
            p.num_gpu_blocks,
            p.block_size,
            enable_caching=config.enable_prefix_caching,
            record_events=config.record_kv_events,
        )
        self.hasher = BlockHasher(config.hash_algo, p.block_size)
        self.waiting = WaitingQueue(config.policy)
        self.running: list[EngineRequest] = []
        self.stats = EngineStats(max_model_len=p.max_model_len)
        # LoRA adapters resident in GPU slots, least recently used first.
        self.lora_slots: OrderedDict[str, None] = OrderedDict()
        self._seq = itertools.count()
        self._num_deferred = 0

    # ------------------------------------------------------------------ requests in/out
    def add_request(self, req: EngineRequest) -> None:
        """Queue a request; its ``arrival_time`` must already be set by the driver."""
        if req.num_prompt_tokens == 0:
            raise ValueError("a request needs at least one prompt token")
        if req.num_prompt_tokens >= self.max_model_len:
            raise ValueError(
                f"prompt of {req.num_prompt_tokens} tokens does not fit max_model_len {self.max_model_len}"
            )
        if req.block_hashes is None and self.config.enable_prefix_caching:
            req.block_hashes = self.hasher.hash_blocks(req.prompt_token_ids, 0, None, req.lora_name, req.cache_salt)
        req.seq = next(self._seq)
        req.status = RequestStatus.WAITING
        self.waiting.push(req)

    def abort_request(self, req: EngineRequest, now: float) -> None:
        """Stop a request (client went away); its blocks go back to the pool."""
        if req.status is RequestStatus.FINISHED:
            return
        if req.status is RequestStatus.RUNNING:
            self.running.remove(req)
            self.kv.free_request(req)
            req.status = RequestStatus.FINISHED
        else:
            req.status = RequestStatus.FINISHED
            self.waiting.remove(req)
        self._record_finish(req, now, "abort")

    def has_work(self) -> bool:
        return bool(self.running) or len(self.waiting) > 0

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_deferred(self) -> int:
        """Waiting requests skipped last step for LoRA slots (vLLM's ``deferred`` reason)."""
        return self._num_deferred

    def take_kv_events(self) -> list[KVEvent]:
        return self.kv.take_events()

    def reset_prefix_cache(self) -> bool:
        return self.kv.reset_prefix_cache()

    # ------------------------------------------------------------------ one step
    def schedule(self, now: float) -> StepPlan | None:
        """Form the next batch at time ``now``; None when there is nothing to run."""
        budget = self.max_num_batched_tokens
        running = self.running
        kv = self.kv
        sched: list[EngineRequest] = []
        num_prefill = 0
        num_decode = 0
        decode_ctx = 0
        prefill_attn = 0.0
        preempted = False
        loras_loaded = 0

        bs = self.block_size
        caching = self.config.enable_prefix_caching
        i = 0
        while i < len(running) and budget > 0:
            req = running[i]
            computed = req.num_computed_tokens
            num_new = req.num_prompt_tokens + req.n_out - computed
            if (
                num_new == 1
                and computed < req.num_blocks * bs
                and (not caching or (computed + 1) // bs <= req.num_cached_blocks)
            ):
                # Decode fast path: the token fits the last block and completes none.
                req.num_scheduled = 1
                sched.append(req)
                budget -= 1
                i += 1
                continue
            if num_new > budget:
                num_new = budget
            if num_new <= 0:
                i += 1
                continue
            ok = True
            while not kv.allocate_slots(req, num_new):
                victim = self._pick_victim()
                vi = running.index(victim)
                if victim in sched:  # already batched this step: give its budget back
                    sched.remove(victim)
                    budget += victim.num_scheduled
                self._preempt(victim, vi)
                preempted = True
                if vi < i:
                    i -= 1
                if victim is req:
                    ok = False
                    break
            if not ok:
                break
            req.num_scheduled = num_new
            sched.append(req)
            budget -= num_new
            i += 1

        self._num_deferred = 0
        if not preempted:
            waiting = self.waiting
            skipped: list[EngineRequest] = []
            max_loras = self.config.max_loras
            active_loras = {r.lora_name for r in running if r.lora_name}
            while len(waiting) and budget > 0 and len(running) < self.max_num_seqs:
                req = waiting.peek()
                if req.lora_name and req.lora_name not in active_loras and len(active_loras) >= max_loras:
                    skipped.append(waiting.pop())
                    continue
                hits = kv.get_computed_blocks(req)
                num_hit = len(hits) * self.block_size
                num_new = req.num_tokens - num_hit
                if num_new > budget:
                    num_new = budget
                if not kv.allocate_slots(req, num_new, hits):
                    break
                waiting.pop()
                req.num_computed_tokens = num_hit
                req.status = RequestStatus.RUNNING
                req.scheduled_time = now
                running.append(req)
                st = self.stats
                st.prefix_cache_queries += req.num_tokens
                st.prefix_cache_hits += num_hit
                if req.first_scheduled_time < 0:
                    req.first_scheduled_time = now
                    req.num_cached_tokens = num_hit
                    st.queue_time.observe(now - req.arrival_time)
                if req.lora_name:
                    if req.lora_name not in active_loras:
                        active_loras.add(req.lora_name)
                    if req.lora_name in self.lora_slots:
                        self.lora_slots.move_to_end(req.lora_name)
                    else:
                        self._load_lora(req.lora_name, active_loras)
                        loras_loaded += 1
                req.num_scheduled = num_new
                sched.append(req)
                budget -= num_new
            for req in reversed(skipped):
                waiting.prepend(req)
            self._num_deferred = len(skipped)

        if not sched:
            return None
        any_lora = False
        for req in sched:
            n = req.num_scheduled
            c = req.num_computed_tokens
            if n == 1 and c >= req.num_prompt_tokens:
                num_decode += 1
                decode_ctx += c
            else:
                num_prefill += n
                prefill_attn += n * (c + n * 0.5)
            if req.lora_name:
                any_lora = True
        num_tokens = self.max_num_batched_tokens - budget
        step = self.profile.step
        duration = step.step_seconds(num_tokens, decode_ctx, prefill_attn)
        if any_lora:
            lc = self.profile.lora
            duration *= 1.0 + lc.step_overhead_frac
            duration += loras_loaded * lc.load_ms * 1e-3
        self.stats.steps += 1
        self.stats.iteration_tokens.observe(num_tokens)
        return StepPlan(now, duration, sched, num_tokens, num_prefill, num_decode)

    def finish_step(self, plan: StepPlan, end: float) -> StepOutput:
        """Apply a batch's results at time ``end``: new tokens, finished requests."""
        out = StepOutput()
        new_reqs = out.new_token_reqs
        finished = out.finished
        bs = self.block_size
        caching = self.config.enable_prefix_caching
        hasher = self.hasher
        itl_groups: dict[float, int] = {}
        st = self.stats
        gen = 0
        max_len = self.max_model_len
        running = RequestStatus.RUNNING
        for req in plan.reqs:
            if req.status is not running:
                continue  # aborted while the step ran
            computed = req.num_computed_tokens + req.num_scheduled
            req.num_computed_tokens = computed
            req.num_scheduled = 0
            n_out = req.n_out
            if computed < req.num_prompt_tokens + n_out:
                continue  # a prefill chunk: no token yet
            out_ids = req.output_token_ids
            if out_ids is not None:
                out_ids.append(req.next_token())
            n_out += 1
            req.n_out = n_out
            gen += 1
            n_tok = computed + 1
            if caching and n_tok % bs == 0:
                hashes = req.block_hashes
                k = n_tok // bs - 1
                if hashes is not None and len(hashes) == k:
                    extra = None
                    if req.lora_name or req.cache_salt:
                        extra = hasher.extra_keys(k, req.lora_name, req.cache_salt)
                    hashes.append(hasher.hash_one(hashes[-1] if k else None, req.token_slice(k * bs, n_tok), extra))
            if req.first_token_time < 0:
                req.first_token_time = end
                st.ttft.observe(end - req.arrival_time)
                st.prompt_tokens += req.num_prompt_tokens
                out.first_token_reqs.append(req)
            else:
                gap = end - req.last_token_time
                itl_groups[gap] = itl_groups.get(gap, 0) + 1
            req.last_token_time = end
            new_reqs.append(req)
            if n_out >= req.max_tokens or n_tok >= max_len:
                finished.append(req)
                req.finish_reason = "length"
            elif req.eos_at is not None and n_out >= req.eos_at:
                finished.append(req)
                req.finish_reason = "stop"
        st.generation_tokens += gen
        for gap, n in itl_groups.items():
            st.itl.observe(gap, n)
            st.itl_fine.observe(gap, n)
        if finished:
            for req in finished:
                req.status = RequestStatus.FINISHED
                self.kv.free_request(req)
                self._record_finish(req, end, req.finish_reason or "stop")
            self.running = [r for r in self.running if r.status is RequestStatus.RUNNING]
        return out

    def step(self, now: float) -> tuple[StepPlan | None, StepOutput | None]:
        """Schedule and finish one step back to back (virtual time)."""
        plan = self.schedule(now)
        if plan is None:
            return None, None
        return plan, self.finish_step(plan, plan.end)

    # ------------------------------------------------------------------ internals
    def _pick_victim(self) -> EngineRequest:
        if self.config.policy == "priority":
            return max(self.running, key=lambda r: (r.priority, r.arrival_time))
        return self.running[-1]

    def _preempt(self, victim: EngineRequest, index: int) -> None:
        del self.running[index]
        self.kv.free_request(victim)
        victim.status = RequestStatus.PREEMPTED
        victim.num_computed_tokens = 0
        victim.num_scheduled = 0
        victim.num_preemptions += 1
        self.stats.num_preemptions += 1
        self.waiting.prepend(victim)

    def _load_lora(self, name: str, active: set[str]) -> None:
        slots = self.lora_slots
        if len(slots) >= self.config.max_loras:
            for old in slots:
                if old not in active:
                    del slots[old]
                    break
            else:  # every slot busy (cannot happen: admission checks max_loras)
                slots.popitem(last=False)
        slots[name] = None

    def _record_finish(self, req: EngineRequest, now: float, reason: str) -> None:
        req.finish_reason = reason
        req.finished_time = now
        st = self.stats
        st.request_success[reason] = st.request_success.get(reason, 0) + 1
        if reason == "abort":
            return
        st.e2e.observe(now - req.arrival_time)
        n_out = req.n_out
        st.request_prompt_tokens.observe(req.num_prompt_tokens)
        st.request_generation_tokens.observe(n_out)
        st.request_num_preemptions.observe(req.num_preemptions)
        if req.first_scheduled_time >= 0:
            st.inference_time.observe(now - req.first_scheduled_time)
            if req.first_token_time >= 0:
                st.prefill_time.observe(req.first_token_time - req.first_scheduled_time)
        if req.first_token_time >= 0:
            decode = now - req.first_token_time
            st.decode_time.observe(decode)
            if n_out > 1:
                st.tpot.observe(decode / (n_out - 1))
