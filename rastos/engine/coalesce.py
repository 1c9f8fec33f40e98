"""Step coalescing: many pure-decode steps of an engine applied at once, in closed form.

When every running sequence is decoding and nothing waits, the batch stays the same from step
to step until a sequence finishes, a request arrives or the KV pool would run out; only the
context grows, by ``B`` tokens a step. Step ``j`` then lasts ``d_j = a + b·j`` with
``a = t_over + max(t_w, B·t_tok) + C0·t_kv`` and ``b = B·t_kv`` (times the LoRA factor), so the
run's end times are an arithmetic series. The twin applies ``k`` such steps in one go: tokens
in bulk, blocks allocated in the same order step-by-step stepping would (step-major, then
running order), full blocks hashed and cached, statistics recorded per step without touching
each token. The result equals ``k`` calls of ``schedule``/``finish_step`` (tested), at a cost
that grows with events, not tokens.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

from rastos.engine.core import EngineCore, StepOutput
from rastos.engine.request import EngineRequest, RequestStatus

__all__ = ["DecodeRun", "apply_decode_run", "plan_decode_run"]


@dataclass(slots=True)
class DecodeRun:
    start: float
    k_max: int  # steps until the first sequence finishes (or the KV pool would run dry)
    a: float  # duration of the first step
    b: float  # growth of the step duration per step
    first_new_block: list[int] | None = None  # per sequence, the step needing its next block (sorted)

    def end(self, k: int) -> float:
        """End time of the ``k``-th step (k ≥ 1)."""
        return self.start + k * self.a + self.b * k * (k - 1) / 2

    def steps_to_reach(self, t: float) -> int:
        """Fewest steps whose end is ≥ ``t`` (at least 1, at most ``k_max``)."""
        if t <= self.start + self.a:
            return 1
        # solve b/2·k² + (a − b/2)·k − (t − start) = 0
        A, B, C = self.b / 2, self.a - self.b / 2, -(t - self.start)
        k = -C / B if A == 0 else (-B + math.sqrt(B * B - 4 * A * C)) / (2 * A)
        k = max(1, math.ceil(k - 1e-9))
        while k > 1 and self.end(k - 1) >= t:
            k -= 1
        while self.end(k) < t and k < self.k_max:
            k += 1
        return min(k, self.k_max)


def kv_usage_during(core: EngineCore, run: DecodeRun, t: float) -> float:
    """``kv_cache_usage_perc`` at time ``t`` inside a run not yet applied: as step-by-step
    stepping would show it, the blocks of the step in flight already allocated."""
    if t < run.start:
        return core.kv.usage
    j = run.steps_to_reach(t)  # the step in flight (1-based); its blocks are allocated
    if run.end(j) <= t:
        j = min(j + 1, run.k_max)
    bs = core.block_size
    j1 = run.first_new_block
    if j1 is None:  # once per run: scrapes come many times a run on a big batch
        # sequence r needs ceil((c_r + j)/bs) - len(blocks_r) extra blocks by step j, that is
        # 1 + (j - j1_r) // bs from step j1_r = len(blocks_r)·bs - c_r + 1 on
        j1 = run.first_new_block = sorted([r.num_blocks * bs - r.num_computed_tokens + 1 for r in core.running])
    due = bisect_right(j1, j)
    need = due
    if due and j - j1[0] >= bs:  # some sequence needs a second block (long runs only)
        need += sum((j - x) // bs for x in j1[:due])
    return 1.0 - (core.kv.num_free_blocks - need) / (core.kv.num_gpu_blocks - 1)


def plan_decode_run(core: EngineCore, now: float, min_steps: int = 2) -> DecodeRun | None:
    """A run of at least ``min_steps`` decode steps starting at ``now``, if the state allows."""
    running = core.running
    if not running or len(core.waiting):
        return None
    last = running[-1]  # a request that just started is last: check it before the whole batch
    if last.num_computed_tokens != last.num_prompt_tokens + last.n_out - 1:
        return None
    bs = core.block_size
    max_len = core.max_model_len
    ctx = 0
    k_max = 1 << 30
    any_lora = False
    for r in running:
        c = r.num_computed_tokens
        n_out = r.n_out
        n_tok = r.num_prompt_tokens + n_out
        if c != n_tok - 1:
            return None  # still prefilling
        ctx += c
        rem = r.max_tokens - n_out  # steps until it finishes: length, EOS or the context limit
        if r.eos_at is not None and r.eos_at - n_out < rem:
            rem = r.eos_at - n_out
        if max_len - n_tok < rem:
            rem = max_len - n_tok
        if rem < k_max:
            k_max = rem
        if r.lora_name:
            any_lora = True
    B = len(running)
    # KV: every sequence may need a new block each `bs` steps; stay within the free pool.
    free = core.kv.num_free_blocks
    k_kv = (free // B) * bs
    k_max = min(k_max, k_kv)
    if k_max < min_steps:
        return None
    st = core.profile.step
    a = st.step_seconds(B, ctx, 0.0)
    b = B * st.t_kv_us * 1e-6
    if any_lora:
        f = 1.0 + core.profile.lora.step_overhead_frac
        a *= f
        b *= f
    return DecodeRun(now, k_max, a, b)


def apply_decode_run(core: EngineCore, run: DecodeRun, k: int) -> StepOutput:
    """Apply the first ``k`` steps of ``run``; returns the sequences that finished at the end."""
    assert 1 <= k <= run.k_max
    running = core.running
    B = len(running)
    bs = core.block_size
    kv = core.kv
    st = core.stats
    caching = core.config.enable_prefix_caching
    hasher = core.hasher
    end = run.end(k)
    # Blocks, in the order step-by-step stepping allocates them: step-major, running order.
    needs: list[tuple[int, int, EngineRequest]] = []
    for order, r in enumerate(running):
        c0 = r.num_computed_tokens
        j = r.num_blocks * bs - c0  # step whose new token needs one more block
        while j < k:
            needs.append((j, order, r))
            j += bs
    needs.sort()  # (step, running order) is unique: the request itself is never compared
    if needs:
        kv.append_blocks([r for _, _, r in needs])
    out = StepOutput()
    max_len = core.max_model_len
    for r in running:
        out_ids = r.output_token_ids
        if out_ids is not None:  # ids kept as a list (the live server); the twin only counts
            take = getattr(r.next_token, "take", None)
            out_ids.extend(take(k) if take is not None else [r.next_token() for _ in range(k)])
        n_out = r.n_out + k
        r.n_out = n_out
        r.num_computed_tokens += k
        r.last_token_time = end
        n_tok = r.num_prompt_tokens + n_out
        if caching and r.block_hashes is not None:
            have = len(r.block_hashes)
            full = n_tok // bs
            if full > have:
                parent = r.block_hashes[-1] if have else None
                r.block_hashes.extend(
                    hasher.hash_blocks(r.token_slice(have * bs, full * bs), 0, parent, r.lora_name, None)
                    if not r.lora_name and not (r.cache_salt and have == 0)
                    else _hash_with_keys(core, r, have, full)
                )
            upto = min(r.num_computed_tokens, n_tok) // bs
            if upto > r.num_cached_blocks:
                kv._cache_full_blocks(r, upto)
        if n_out >= r.max_tokens or n_tok >= max_len:
            r.finish_reason = "length"
            out.finished.append(r)
        elif r.eos_at is not None and n_out >= r.eos_at:
            r.finish_reason = "stop"
            out.finished.append(r)
    out.new_token_reqs = list(running)
    st.steps += k
    st.generation_tokens += B * k
    st.iteration_tokens.observe(B, k)
    st.itl.observe_linear(run.a, run.b, k, B)
    st.itl_fine.observe_linear(run.a, run.b, k, B)
    if out.finished:
        for r in out.finished:
            r.status = RequestStatus.FINISHED
            kv.free_request(r)
            core._record_finish(r, end, r.finish_reason or "stop")
        core.running = [r for r in running if r.status is RequestStatus.RUNNING]
    return out


def _hash_with_keys(core: EngineCore, r: EngineRequest, have: int, full: int) -> list:
    """Block hashes one by one when extra keys (LoRA, salt) apply."""
    bs = core.block_size
    out = []
    parent = r.block_hashes[-1] if have else None  # type: ignore[index]
    for i in range(have, full):
        extra = core.hasher.extra_keys(i, r.lora_name, r.cache_salt)
        parent = core.hasher.hash_one(parent, r.token_slice(i * bs, (i + 1) * bs), extra)
        out.append(parent)
    return out
