"""`rastos bench` end to end: table, JSON with the demo's keys plus the twin's, two PNGs; errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

DEMO_KEYS = {"ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_p50_s", "tpot_p90_s", "output_tokens_per_s",
             "prefix_hit_rate", "requests_ok", "requests_failed"}  # fmt: skip
TWIN_KEYS = {"itl_p50_s", "itl_p99_s", "e2e_p90_s", "goodput_rps", "slo_attainment", "input_tokens_per_s",
             "prefix_hit_rate_pooled_ceiling", "load_imbalance_cv", "queue_time_p99_s", "preemptions",
             "wall_seconds"}  # fmt: skip


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rastos.cli", "bench", *args], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_bench_small_run_writes_json_and_plots(tmp_path):
    out = tmp_path / "o.json"
    r = bench("--workload", "shared-prefix", "--policies", "round-robin,default", "--endpoints", "2",
              "--requests", "150", "--param", "groups=6", "--param", "system_prompt_len=2000",
              "--slo-ttft-ms", "500", "--json", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "round-robin" in r.stdout and "default" in r.stdout and "prefix hit" in r.stdout
    data = json.loads(out.read_text())
    assert set(data["policies"]) == {"round-robin", "default"}
    for s in data["policies"].values():
        assert DEMO_KEYS | TWIN_KEYS <= set(s)
        assert s["requests_ok"] == 150 and s["requests_failed"] == 0
        assert s["slo"] == {"ttft_s": 0.5, "tpot_s": 0.05}
        assert 0 < s["prefix_hit_rate"] <= s["prefix_hit_rate_pooled_ceiling"] + 0.05
    assert data["setup"]["endpoints"] == 2 and data["setup"]["rate_rps"] > 0
    for png in ("o-ttft.png", "o-load.png"):
        assert (tmp_path / png).stat().st_size > 10_000


def test_bench_replays_a_trace(tmp_path):
    trace = Path(__file__).resolve().parents[1] / "workload" / "data" / "mooncake_head200.jsonl"
    r = bench("--trace", str(trace), "--policies", "default", "--endpoints", "4", "--requests", "40",
              "--time-scale", "4", "--json", str(tmp_path / "t.json"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "t.json").read_text())["policies"]["default"]
    assert s["requests_ok"] + s["requests_failed"] == 40


def test_policy_given_as_a_yaml_path(tmp_path):
    pol = tmp_path / "mine.yaml"
    pol.write_text("plugins:\n  - type: queue-scorer\n  - type: max-score-picker\n"
                   "schedulingProfiles:\n  - name: p\n    plugins: [{pluginRef: queue-scorer}, {pluginRef: max-score-picker}]\n")  # fmt: skip
    r = bench("--policies", str(pol), "--endpoints", "2", "--requests", "30", "--param", "groups=2")
    assert r.returncode == 0, r.stderr
    assert "mine" in r.stdout or str(pol) in r.stdout


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--policies", "no-such-policy"], "no-such-policy"),
        (["--workload", "nope"], "unknown workload"),
        (["--trace", "/nonexistent/trace.jsonl"], "does not exist"),
        (["--param", "groups"], "key=value"),
    ],
)
def test_bad_invocations_exit_2_with_a_message(args, msg):
    r = bench(*args, "--requests", "5")
    assert r.returncode == 2 and msg in r.stderr, r.stderr
