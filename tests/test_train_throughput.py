"""benchmarks/train_throughput.py --smoke runs against the current engine (it once crashed on a stale
loss signature), writes one flat JSON object with the figures its docstring names, and compares
configurations that compute the same loss."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"
CONFIGS = ("baseline", "cache_only", "dynamic_only", "engine")


@pytest.mark.slow
def test_smoke_run_writes_its_figures_and_compares_equal_work(tmp_path):
    spec = importlib.util.spec_from_file_location("train_throughput", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "figures" / "bench.json"
    returned = bench.main(["--smoke", "--json", str(out)])
    figures = json.loads(out.read_text())
    assert figures == json.loads(json.dumps(returned))
    assert all(not isinstance(v, (dict, list)) for v in figures.values()), "not flat"
    assert figures["smoke"] is True and figures["archs"] == "tiny"
    positive = [f"tiny_{c}_{m}" for c in CONFIGS for m in ("samples_per_s", "peak_memory_mb")]
    positive += ["tiny_engine_text_flops_per_s", "tiny_cache_build_s_per_image", "gemm_flops_per_s",
                 "gemm_utilization", "speedup_tiny", "cache_ratio_tiny", "dynamic_padding_ratio_tiny",
                 "dynamic_padding_ratio"]
    for key in positive:
        assert math.isfinite(figures[key]) and figures[key] > 0, key
    for c in CONFIGS:
        assert figures[f"tiny_{c}_peak_memory_growth_mb"] >= 0, c  # a high-water mark never falls
    # padding to 77 and recomputing the vision tower must leave the loss as it is, or the ratios compare
    # different work
    assert figures["tiny_same_loss"] is True, figures["tiny_loss_max_abs_diff"]
    assert 0 <= figures["tiny_loss_max_abs_diff"] <= 1e-5
    # the default recipe's step: the fast route computes what the reference route computes, and both were timed
    assert figures["recipe_examples"] > 0 and figures["recipe_scenes"] == 200
    assert figures["recipe_same_loss"] is True, figures["recipe_loss_rel_diff"]
    assert figures["recipe_same_gradient"] is True, figures["recipe_grad_rel_diff"]
    for key in ("recipe_reference_s_per_step", "recipe_fast_s_per_step", "recipe_reference_setup_s",
                "recipe_fast_setup_s", "recipe_fast_ratio"):
        assert math.isfinite(figures[key]) and figures[key] > 0, key
    assert figures["recipe_frozen_kept_mb"] > 0, "the fast route kept no frozen output"
