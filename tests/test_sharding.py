"""Every evaluation command under torchrun: 2 gloo processes write what 1 process writes.

The reference is the same commands under `torchrun --nproc_per_node 1`, both with OMP_NUM_THREADS=1
(torchrun sets it only for more than one process; batched float sums depend on the thread count).
Both launches run the four commands in one process group each (`tests/_dist_eval.py`), side by side.
Resume from another process count's parts, and the refusal of a part made with other settings, run
in-process on one thread, which reproduces the launched runs bit for bit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from negation_encoder.cli import main
from negation_encoder.distributed import PartLogs, Processes
from negation_encoder.errors import InputError

from ._shard_worlds import eval_args, seg_args, t2i_args, write_eval_world, write_seg_world, write_t2i_world

HELPER = Path(__file__).with_name("_dist_eval.py")


def _commands(worlds: Path, out: Path) -> list[list[str]]:
    return [t2i_args(worlds / "t2i", out / "negscore"),
            t2i_args(worlds / "t2i", out / "compare", "compare", "--limit", "2", "--questions",
                     str(worlds / "t2i" / "qa.json")),  # Neg Score of the four arms, then TIFA of two
            seg_args(worlds / "seg", out / "seg"),
            seg_args(worlds / "seg", out / "seg_compare", "compare", "--resamples", "200"),
            eval_args(worlds / "eval", out / "eval")]


def launch(nproc: int, commands: list[list[str]]) -> subprocess.Popen:
    """`torchrun --standalone` (a free port of its own) running `commands` in `nproc` processes."""
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    return subprocess.Popen([torchrun, "--standalone", "--nproc_per_node", str(nproc), str(HELPER),
                             json.dumps(commands)], env=env, cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_shares_are_disjoint_cover_the_list_and_keep_its_order():
    items = list(range(11))
    for world in (1, 2, 3, 4):
        shares = [Processes(rank, world).share(items) for rank in range(world)]
        assert sorted(x for share in shares for x in share) == items
        assert all(share == sorted(share) for share in shares)
        assert shares[0][:2] == [0, world], "round-robin"


def test_part_logs_read_every_process_count_and_refuse_a_part_of_other_settings(tmp_path):
    settings = {"run": {"steps": 2}, "generation": (1, 2)}
    PartLogs(tmp_path, "images", settings, Processes(1, 2)).append([{"id": "a"}])
    PartLogs(tmp_path, "images", settings, Processes(2, 3)).append([{"id": "b"}, {"id": "c"}])
    PartLogs(tmp_path, "tifa_images", settings, Processes(0, 1)).append([{"id": "t"}])
    now = PartLogs(tmp_path, "images", settings, Processes(0, 1))
    assert [p.name for p in now.paths()] == ["images.part-1-of-2.jsonl", "images.part-2-of-3.jsonl"]
    now.check()
    assert [r["id"] for r in now.records()] == ["a", "b", "c"]
    with pytest.raises(InputError, match=r"images.part-1-of-2.jsonl: a part written by another configuration "
                                         r"\(run \(\{'steps': 2\} -> \{'steps': 3\}\)\)"):
        PartLogs(tmp_path, "images", {**settings, "run": {"steps": 3}}, Processes()).check()
    (tmp_path / "parts" / "images.part-2-of-3.json").unlink()
    with pytest.raises(InputError, match="images.part-2-of-3.json missing or unreadable"):
        now.check()
    now.remove()
    left = sorted(p.name for p in (tmp_path / "parts").iterdir())
    assert left == ["tifa_images.part-0-of-1.json", "tifa_images.part-0-of-1.jsonl"], "another log's parts stay"


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shard_worlds")
    write_t2i_world(root / "t2i")
    write_seg_world(root / "seg")
    write_eval_world(root / "eval")
    return root


@pytest.fixture(scope="module")
def runs(worlds, tmp_path_factory) -> dict[int, Path]:
    outs = {n: tmp_path_factory.mktemp(f"nproc{n}") for n in (1, 2)}
    procs = {n: launch(n, _commands(worlds, out)) for n, out in outs.items()}
    for n, p in procs.items():
        log, _ = p.communicate(timeout=600)
        assert p.returncode == 0, f"{n} process(es):\n{log[-4000:]}"
    return outs


def _files(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.relative_to(folder).as_posix().startswith(skip)}


@pytest.mark.slow
@pytest.mark.parametrize("command", ["negscore", "compare"])
def test_t2i_two_processes_write_what_one_process_writes(runs, command):
    one, two = runs[1] / command, runs[2] / command
    files = _files(one, skip=("run_config.json",))
    assert "summary.json" in files and "images.jsonl" in files
    assert len([f for f in files if f.endswith(".png")]) > 8
    assert _files(two, skip=("run_config.json",)) == files, "the same images, records, summary, report and grid"
    assert not (two / "parts").exists(), "the parts are merged and removed"
    summary = json.loads(files["summary.json"])
    arms = ["base", "swapped"] if command == "negscore" else \
        ["base", "base+negprompt", "omit", "swapped", "swapped+negprompt"]
    assert list(summary["arms"]) == arms
    records = [json.loads(line) for line in files["images.jsonl"].decode().splitlines()]
    assert len(records) == len({(r["arm"], r["key"], r["seed"]) for r in records}) == summary["run"]["generated"]
    if command == "compare":
        tifa = json.loads(files["tifa_summary.json"])
        assert list(tifa["arms"]) == ["base", "swapped"] and tifa["run"]["generated"] == 8
        assert len(files["tifa_images.jsonl"].decode().splitlines()) == 8


@pytest.mark.slow
def test_seg_two_processes_write_what_one_process_writes(runs):
    one, two = runs[1] / "seg", runs[2] / "seg"
    assert (two / "samples.jsonl").read_bytes() == (one / "samples.jsonl").read_bytes()
    lines = (one / "samples.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [f"s{i}" for i in range(7)], "one line a sample, dataset order"
    m1, m2 = (json.loads((f / "metrics.json").read_text()) for f in (one, two))
    assert m1.pop("info_seconds") >= 0 and m2.pop("info_seconds") >= 0
    assert m2 == m1 and m1["info_computed"] == 7
    assert (two / "overlays.png").read_bytes() == (one / "overlays.png").read_bytes()
    assert not (two / "parts").exists()


@pytest.mark.slow
def test_seg_compare_two_processes_write_what_one_process_writes(runs):
    one, two = runs[1] / "seg_compare", runs[2] / "seg_compare"
    for arm in ("original", "swapped"):
        assert (two / arm / "samples.jsonl").read_bytes() == (one / arm / "samples.jsonl").read_bytes(), arm
    c1, c2 = (json.loads((f / "comparison.json").read_text()) for f in (one, two))
    assert c2 == c1 and c1["paired_n"] == 7
    assert (two / "comparison.md").read_bytes() == (one / "comparison.md").read_bytes()


def _cache_rows(out: Path) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    from safetensors.torch import load_file

    (folder,) = (out / "image_cache").iterdir()
    meta = json.loads((folder / "cache_meta.json").read_text())
    shards = [load_file(str(folder / s))["embeddings"] for s in meta["shards"]]
    rows = {k: shards[s][r] for k, (s, r) in meta["index"].items()}
    return rows, {name: len(t) for name, t in zip(meta["shards"], shards, strict=True)}


@pytest.mark.slow
def test_eval_two_processes_write_what_one_process_writes(runs):
    one, two = runs[1] / "eval", runs[2] / "eval"
    r1, r2 = (json.loads((f / "eval_results.json").read_text()) for f in (one, two))
    m1, m2 = r1.pop("meta"), r2.pop("meta")
    assert r2 == r1
    assert (m1["processes"], m2["processes"]) == (1, 2)
    for m in (m1, m2):
        for k in ("seconds", "processes"):
            m.pop(k)
        m["image_cache"].pop("dir")
        for b in m["benchmarks"].values():
            b.pop("seconds")
    assert m2 == m1
    assert _files(two / "predictions") == _files(one / "predictions")
    # the cache: every image once, filled by both processes, the same rows as one process computed
    rows1, shards1 = _cache_rows(one)
    rows2, shards2 = _cache_rows(two)
    assert sorted(rows2) == sorted(rows1) and all(torch.equal(rows1[k], rows2[k]) for k in rows1)
    assert len(shards2) == 2 and sum(shards2.values()) == len(rows2) == m2["image_cache"]["computed"], \
        "each process wrote its own shard, each image once"


def _one_thread():
    """In-process runs on one thread reproduce the launched ones (OMP_NUM_THREADS=1) bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    return threads


def _as_killed_two_process_run(src: Path, dst: Path, log_name: str, settings: dict,
                               keep: list[int]) -> list[dict]:
    """A copy of a finished run folder as a 2-process run killed with the log lines `keep` in process 1's
    part (and a torn line after them): no merged log, no summaries, only those lines' images."""
    shutil.copytree(src, dst)
    records = [json.loads(x) for x in (dst / log_name).read_text().splitlines()]
    kept = [records[i] for i in keep]
    (dst / "parts").mkdir()
    stem = Path(log_name).stem
    (dst / "parts" / f"{stem}.part-1-of-2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept)
                                                             + '{"id": "torn')
    (dst / "parts" / f"{stem}.part-1-of-2.json").write_text(json.dumps(settings))
    for name in (log_name, "summary.json", "metrics.json", "report.md", "grid.png", "summary.md", "overlays.png"):
        (dst / name).unlink(missing_ok=True)
    kept_images = {r.get("image") for r in kept}
    for p in (dst / "images").rglob("*.png") if (dst / "images").exists() else ():
        if p.relative_to(dst).as_posix() not in kept_images:
            p.unlink()
    return kept


@pytest.mark.slow
def test_t2i_resumes_another_process_counts_parts_and_refuses_a_part_of_other_settings(worlds, runs, tmp_path,
                                                                                       capsys):
    from eval_t2i.generation import GenerationConfig
    from eval_t2i.runner import _settings

    ref = runs[1] / "negscore"
    settings = _settings(ref, "images.jsonl", GenerationConfig(steps=2, height=32, width=32))
    out = tmp_path / "killed"
    # process 1's first two batches of 2 (base t1 and t3, both seeds): the batches left are those of the full run
    kept = _as_killed_two_process_run(ref, out, "images.jsonl", settings, keep=[2, 3, 6, 7])
    marks = {r["image"]: (out / r["image"]).stat().st_mtime_ns for r in kept}
    threads = _one_thread()
    try:
        assert main(t2i_args(worlds / "t2i", out, "negscore", "--resume")) == 0
    finally:
        torch.set_num_threads(threads)
    assert "16 images generated, 4 already finished" in capsys.readouterr().out
    assert {k: (out / k).stat().st_mtime_ns for k in marks} == marks, "a finished image was made again"
    assert not (out / "parts").exists()
    for name in ("images.jsonl", "report.md"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    s_ref, s_out = (json.loads((f / "summary.json").read_text()) for f in (ref, out))
    assert s_out.pop("run") == {"generated": 16, "skipped_finished": 4} and s_ref.pop("run")["generated"] == 20
    assert s_out == s_ref

    bad = tmp_path / "other"
    _as_killed_two_process_run(ref, bad, "images.jsonl", {**settings, "generation": {**settings["generation"],
                                                                                       "steps": 3}}, keep=[2, 3])
    assert main(t2i_args(worlds / "t2i", bad, "negscore", "--resume")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "images.part-1-of-2.jsonl: a part written by another configuration" in err[0], err
    assert "'steps': 2" in err[0] and not (bad / "images.jsonl").exists(), "refused before any image"


@pytest.mark.slow
def test_seg_resumes_another_process_counts_parts_and_refuses_a_part_of_other_settings(worlds, runs, tmp_path,
                                                                                       capsys):
    ref = runs[1] / "seg"
    settings = json.loads((ref / "run.json").read_text())
    out = tmp_path / "killed"
    _as_killed_two_process_run(ref, out, "samples.jsonl", settings, keep=[1, 3])  # halves of two batches
    threads = _one_thread()
    try:
        assert main(seg_args(worlds / "seg", out, "eval", "--resume")) == 0
    finally:
        torch.set_num_threads(threads)
    assert "(5 computed, 2 resumed)" in capsys.readouterr().out
    assert (out / "samples.jsonl").read_bytes() == (ref / "samples.jsonl").read_bytes()
    m_ref, m_out = (json.loads((f / "metrics.json").read_text()) for f in (ref, out))
    assert {k: v for k, v in m_out.items() if k not in ("info_seconds", "info_computed")} == \
        {k: v for k, v in m_ref.items() if k not in ("info_seconds", "info_computed")}
    assert not (out / "parts").exists()

    bad = tmp_path / "other"
    _as_killed_two_process_run(ref, bad, "samples.jsonl", {**settings, "batch_size": 4}, keep=[1, 3])
    assert main(seg_args(worlds / "seg", bad, "eval", "--resume")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "samples.part-1-of-2.jsonl: a part written by another configuration" in err[0], err
    assert "batch_size (4 -> 2)" in err[0]
