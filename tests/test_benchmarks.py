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
    "eval_scaling": ("seconds_1proc", "seconds_2proc", "speedup", "efficiency", "identical", "load_1min_before",
                     "machine_speedup", "command_seconds_1proc", "command_seconds_2proc", "images_made"),
}


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
    returned = _load(name).main(["--smoke", "--json", str(out)])
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
    if name == "eval_scaling":
        # two clocks: the command's own time, taken inside the main process after its imports, is part of
        # the launch's wall time taken outside; and the run made every image its size asks for
        for n in (1, 2):
            assert 0 < figures[f"command_seconds_{n}proc"] < figures[f"seconds_{n}proc"]
        assert figures["images_made"] == 2 * figures["prompts"] * figures["seeds"] == figures["images"]
