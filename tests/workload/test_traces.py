"""Trace replay: Mooncake hash_ids to tokens, Azure CSV, generic JSONL, order, scaling, errors."""

import json
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from rastos.errors import ConfigError
from rastos.workload.traces import MOONCAKE_BLOCK, load_trace

DATA = Path(__file__).resolve().parent / "data"  # slices of ../shared/data (see README there)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_mooncake_equal_hash_ids_give_equal_tokens_and_lengths_are_cut(tmp_path):
    f = write_jsonl(tmp_path / "m.jsonl", [
        {"timestamp": 0, "input_length": 1100, "output_length": 7, "hash_ids": [1, 2, 3]},
        {"timestamp": 500, "input_length": 700, "output_length": 0, "hash_ids": [1, 9]},
    ])  # fmt: skip
    a, b = load_trace(f)
    assert (a.prompt_tokens, b.prompt_tokens) == (1100, 700)
    assert (a.arrival, b.arrival) == (0.0, 0.5)  # milliseconds to seconds
    assert b.max_tokens == 1  # at least one output token
    assert np.array_equal(a.prompt[:MOONCAKE_BLOCK], b.prompt[:MOONCAKE_BLOCK])
    assert not np.array_equal(a.prompt[MOONCAKE_BLOCK:700], b.prompt[MOONCAKE_BLOCK:700])
    assert a.prompt.min() >= 256


def test_the_real_mooncake_trace_shares_prefixes_across_requests():
    path = DATA / "mooncake_head200.jsonl"
    ids_seen: set[int] = set()
    id_reuse = id_total = 0
    with open(path) as f:
        for line in islice(f, 200):
            for h in json.loads(line)["hash_ids"]:
                id_reuse += h in ids_seen
                id_total += 1
                ids_seen.add(h)
    seen: set[bytes] = set()
    reused = total = 0
    for r in islice(load_trace(path), 200):
        for i in range(-(-r.prompt_tokens // MOONCAKE_BLOCK)):
            blk = r.prompt[i * MOONCAKE_BLOCK : (i + 1) * MOONCAKE_BLOCK].tobytes()
            reused += blk in seen
            total += 1
            seen.add(blk)
    assert id_reuse > 50 and total == id_total
    assert reused / total == pytest.approx(id_reuse / id_total, abs=0.01)  # the file's reuse, as tokens


def test_time_scale_sample_limit_and_unsorted_files(tmp_path):
    rows = [{"timestamp": t, "input_length": 10, "output_length": 2, "hash_ids": [t]} for t in (3000, 1000, 2000)]
    f = write_jsonl(tmp_path / "u.jsonl", rows + [
        {"timestamp": 4000 + i, "input_length": 10, "output_length": 2, "hash_ids": [i]} for i in range(400)
    ])  # fmt: skip
    reqs = list(load_trace(f, time_scale=0.5))
    assert [r.arrival for r in reqs[:3]] == [0.5, 1.0, 1.5]  # sorted, then scaled
    assert [r.id for r in reqs] == list(range(403))
    kept = list(load_trace(f, sample=0.5, seed=1))
    assert 150 < len(kept) < 250 and [r.id for r in kept] == list(range(len(kept)))
    assert len(list(load_trace(f, limit=5))) == 5


def test_azure_csv_keeps_lengths_and_relative_time(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 "2023-11-16 18:17:03.9799600,4808,10\n"
                 "2023-11-16 18:17:05.4799600,300,0\n")  # fmt: skip
    a, b = load_trace(f)
    assert (a.prompt_tokens, a.max_tokens, b.prompt_tokens, b.max_tokens) == (4808, 10, 300, 1)
    assert a.arrival == 0.0 and b.arrival == pytest.approx(1.5)


def test_the_real_azure_trace_loads():
    reqs = list(islice(load_trace(DATA / "azure2023_code_head200.csv"), 50))
    assert len(reqs) == 50 and reqs[0].arrival == 0.0


def test_generic_jsonl_fields(tmp_path):
    f = write_jsonl(tmp_path / "g.jsonl", [
        {"timestamp": 1.0, "prompt": "hello there, general kenobi", "output_tokens": 5, "tenant": "acme",
         "priority": 2, "session": "s1", "model": "m2"},
        {"timestamp_ms": 1500, "prompt_tokens": 40, "prefix_group": "faq", "prefix_tokens": 64},
        {"timestamp": 2.0, "token_ids": [300, 301, 302], "prefix_group": "faq"},
    ])  # fmt: skip
    a, b, c = load_trace(f)
    assert (a.tenant, a.priority, a.session, a.model, a.max_tokens) == ("acme", 2, "s1", "m2", 5)
    assert a.prompt_tokens > 3
    assert b.arrival == 1.5 and b.prompt_tokens == 64 + 40 and b.max_tokens == 128
    assert np.array_equal(b.prompt[:64], c.prompt[:64]) and c.prompt[64:].tolist() == [300, 301, 302]


@pytest.mark.parametrize(
    "line, where",
    [('{"timestamp": "soon", "prompt": "x"}', ":2:"), ('{"timestamp": 1}', ":2:"), ("[1, 2]", ":2:")],
)
def test_bad_generic_records_name_the_line(tmp_path, line, where):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"timestamp": 0, "prompt": "ok"}\n' + line + "\n")
    with pytest.raises(ConfigError, match=where):
        list(load_trace(f))


def test_format_guessing_and_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_trace(tmp_path / "nope.jsonl")
    f = write_jsonl(tmp_path / "x.jsonl", [{"timestamp": 0, "prompt": "x"}])
    with pytest.raises(ConfigError, match="unknown trace format"):
        load_trace(f, "parquet")
    with pytest.raises(ConfigError, match="not a Mooncake record"):
        list(load_trace(f, "mooncake"))
