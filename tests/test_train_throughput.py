"""benchmarks/train_throughput.py --smoke runs against the current engine (it once crashed on a stale
loss signature) and writes one flat JSON object whose ratios are its own measurements divided."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"


@pytest.mark.slow
def test_smoke_run_writes_flat_json_with_consistent_ratios(tmp_path):
    spec = importlib.util.spec_from_file_location("train_throughput", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "figures" / "bench.json"
    returned = bench.main(["--smoke", "--json", str(out)])
    figures = json.loads(out.read_text())
    assert figures == json.loads(json.dumps(returned))
    assert all(not isinstance(v, (dict, list)) for v in figures.values()), "not flat"
    assert figures["smoke"] is True and figures["archs"] == "tiny"
    for name in ("baseline", "cache_only", "dynamic_only", "engine"):
        assert figures[f"tiny_{name}_samples_per_s"] > 0, name
    base = figures["tiny_baseline_samples_per_s"]
    assert figures["speedup_tiny"] == pytest.approx(figures["tiny_engine_samples_per_s"] / base)
    assert figures["cache_ratio_tiny"] == pytest.approx(figures["tiny_cache_only_samples_per_s"] / base)
    assert figures["dynamic_padding_ratio"] == pytest.approx(
        figures["tiny_engine_samples_per_s"] / figures["tiny_cache_only_samples_per_s"])
