"""Every script in benchmarks/ runs at `--smoke` size and writes one flat JSON object with its figures,
so a benchmark that drifts from the code it measures fails here (what CI runs), not on the day someone
wants a number. train_throughput.py has its own test (tests/test_train_throughput.py)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
OWN_TEST = {"train_throughput"}  # tests/test_train_throughput.py
KEYS = {
    "t2i_throughput": ("loop_images_per_s", "batched_images_per_s", "batch_ratio", "judge_batched_pairs_per_s",
                       "judge_batch_ratio", "images_equal", "judge_equal"),
    "seg_metrics": ("vectorised_s", "loop_s", "speedup", "vectorised_peak_memory_mb", "loop_peak_memory_mb",
                    "counts_equal"),
    "generate_throughput": ("local_one_at_a_time_items_per_s", "local_batched_items_per_s", "batch_ratio",
                            "http_concurrency_1_items_per_s", "http_concurrency_8_items_per_s",
                            "concurrency_ratio"),
    "full_size": ("build_s", "setup_s", "first_step_s", "step_s", "samples_per_s", "peak_memory_mb",
                  "step_peak_memory_mb", "peak_memory_growth_mb", "base_params", "text_tower_params",
                  "trainable_params", "base_text_params", "unet_params", "vae_params", "frozen_params", "epoch_steps",
                  "epoch_s", "epoch_h", "s_per_record", "all_terms_logged", "losses_finite"),
    # gpu_check runs without its sd1 section here: that section is full_size.py --target sd1, tested above
    "gpu_check": ("l14_ok", "clipseg_ok", "generation_ok", "l14_fp32_samples_per_s",
                  "l14_fp32_mfu_measured_gemm", "l14_fp32_peak_memory_mb", "l14_bf16_samples_per_s",
                  "l14_bf16_mfu_measured_gemm", "clipseg_step_s", "clipseg_peak_memory_mb", "clipseg_epoch_h",
                  "clipseg_all_terms_logged", "generation_plain_images_per_s", "generation_plain_s_per_image",
                  "generation_route_images_per_s", "generation_route_s_per_image", "total_s"),
    "eval_scaling": ("seconds_1proc", "seconds_2proc", "speedup", "efficiency", "identical", "load_1min_before",
                     "machine_speedup", "command_seconds_1proc", "command_seconds_2proc", "images_made"),
}


ARGS = {"gpu_check": ["--only", "l14,clipseg,generation"]}  # each section is a child process: seconds each


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_benchmark_script_is_covered():
    scripts = {p.stem for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")}  # _*.py: helpers
    assert scripts == set(KEYS) | OWN_TEST, "a benchmark script without a smoke test (add it to KEYS)"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(KEYS))
def test_smoke_run_writes_flat_json_with_its_keys(name, tmp_path):
    out = tmp_path / "figures" / f"{name}.json"
    returned = _load(name).main(["--smoke", "--json", str(out), *ARGS.get(name, [])])
    figures = json.loads(out.read_text())
    assert figures == json.loads(json.dumps(returned))
    assert all(not isinstance(v, (dict, list)) for v in figures.values()), "not flat"
    assert figures["smoke"] is True
    assert all(math.isfinite(v) for v in figures.values() if isinstance(v, float)), figures
    missing = [k for k in KEYS[name] if k not in figures]
    assert not missing, f"{name}: missing {missing}"
    checks = [k for k in KEYS[name] if isinstance(figures[k], bool)]  # the compared paths agree
    assert all(figures[k] is True for k in checks), {k: figures[k] for k in checks}
    rates = [k for k in KEYS[name] if k not in checks and k != "load_1min_before"]
    assert all(figures[k] > 0 for k in rates), {k: figures[k] for k in rates}
    if name == "full_size":  # the sd1 target: every term of the recipe and unet_loss gave a value every step
        assert "unet_loss" in figures["terms"].split(",") and figures["logged_terms"] == figures["terms"], figures
    if name == "gpu_check":  # every section wrote its files; the route sent the prompts' negated concepts
        assert {p.name for p in out.parent.glob("*.json")} >= {"l14_fp32.json", "l14_bf16.json", "clipseg.json",
                                                                 "generation.json"}
        assert not (out.parent / "sd1.json").exists() and "sd1_ok" not in figures  # --only is honoured
        generation = json.loads((out.parent / "generation.json").read_text())
        assert generation["route_negative_prompts"] == generation["batch"] > 0
        assert json.loads((out.parent / "clipseg.json").read_text())["frozen_dtype"] == "bfloat16"
    if name == "eval_scaling":
        # two clocks: the command's own time, taken inside the main process after its imports, is part of
        # the launch's wall time taken outside; and the run made every image its size asks for
        for n in (1, 2):
            assert 0 < figures[f"command_seconds_{n}proc"] < figures[f"seconds_{n}proc"]
        assert figures["images_made"] == 2 * figures["prompts"] * figures["seeds"] == figures["images"]


@pytest.mark.slow
@pytest.mark.parametrize("target,frozen,terms", [
    ("clipseg", "bfloat16", "infonce,mcq,distractor,preserve_embeds,seg_loss"),
    ("sdxl", "float32", "infonce,mcq,distractor,preserve_embeds,preserve,omit_states,preserve_states"),
])
def test_full_size_runs_each_targets_terms(target, frozen, terms, tmp_path):
    """The other two targets at smoke size: the recipe's terms for that model (no unet_loss on SDXL, whose
    UNet reads two towers), each logged every step, the frozen models counted, the figures finite."""
    figures = _load("full_size").main(["--smoke", "--target", target, "--frozen-dtype", frozen,
                                       "--json", str(tmp_path / "f.json")])
    assert figures["terms"] == figures["logged_terms"] == terms and figures["all_terms_logged"] is True
    assert figures["losses_finite"] is True and figures["frozen_dtype"] == frozen
    frozen_part = {"clipseg": "clipseg_params", "sdxl": "tower2_params"}[target]
    for key in (frozen_part, "step_s", "setup_s", "peak_memory_mb", "epoch_s", "trainable_params"):
        assert math.isfinite(figures[key]) and figures[key] > 0, key
    if target == "clipseg":
        assert figures["seg_batch"] >= 1 and figures["referring_records"] >= figures["seg_batch"]
    else:
        assert figures["tower2_forward_s"] > 0 and "unet_params" not in figures
