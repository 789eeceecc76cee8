"""SIGTERM during a run ends with one line saying where the run stood and how to resume (exit 143), and the
resumed run finishes. `negenc train` runs in a subprocess, as a scheduler would stop it."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from negation_encoder.cli import main
from negation_encoder.runio import RunFolder

from ._tiny_world import make_tiny_world

STEPS = 150


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sigterm")
    w = make_tiny_world(root, n=12)
    cfg = {"optim": {"steps": STEPS, "batch_size": 6, "lr": 1e-3, "warmup_steps": 1},
           "run": {"save_every": 5, "log_every": 1, "keep_checkpoints": 2},
           "data": {"cache_dir": str(root / "cache")}}
    (root / "cfg.json").write_text(json.dumps(cfg))
    w["cfg"] = str(root / "cfg.json")
    return w


def _train(w, out, *extra):
    return ["train", "--config", w["cfg"], "--base", w["base"], "--data", w["data"], "--images", w["images"],
            "--out", str(out), "--no-progress", *extra]


@pytest.mark.slow
def test_sigterm_during_training_says_where_it_stopped_and_resume_finishes(world, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "negation_encoder.cli", *_train(world, out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while not (out / "checkpoints" / "step_10").is_dir():  # mid-run: some checkpoints written, many steps left
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never reached step 10"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err
    last = err.strip().splitlines()[-1]
    m = re.fullmatch(rf"negenc: terminated \(SIGTERM\) after step (\d+) of {STEPS}; the last checkpoint is (.+); "
                     r"continue with the same command and --resume", last)
    assert m, last
    assert "Traceback" not in err, err
    stopped, checkpoint = int(m.group(1)), m.group(2)
    saved = sorted(int(p.name[5:]) for p in (out / "checkpoints").iterdir() if p.name[5:].isdigit())
    assert checkpoint == str(out / "checkpoints" / f"step_{saved[-1]}"), (checkpoint, saved)
    # the newest finished checkpoint: the one at or before the step reached (the one before, if the signal
    # landed inside a save, which then removed its half-written folder)
    assert stopped - 10 < saved[-1] <= stopped, (stopped, saved)
    assert not list((out / "checkpoints").glob("*.tmp")), "a half-written checkpoint is left"
    assert stopped < STEPS
    # the folder was released on the way out, and --resume finishes the run from that checkpoint
    assert main(_train(world, out, "--resume")) == 0
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()[1:]]
    assert [e["step"] for e in log] == list(range(1, STEPS + 1))
    assert (out / "model" / "model.safetensors").is_file()


def test_sigterm_in_another_command_names_the_folder_to_resume(tmp_path, capsys, monkeypatch):
    """Any command holding a resumable run folder: the line names the folder and the way on."""
    from negation_encoder.cli import seg as seg_cli

    out = tmp_path / "o"

    def stopped(_args):
        with RunFolder(out, ("samples.jsonl",), "run.json").lock():
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises here, inside the command
            time.sleep(5)
        return 0

    monkeypatch.setattr(seg_cli, "seg_command", stopped)
    before = signal.getsignal(signal.SIGTERM)
    code = main(["seg", "eval", "--dataset", "jsonl", "--jsonl", "x.jsonl", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 143, err
    assert err == f"negenc: terminated (SIGTERM); the finished work in {out} is kept; continue with the same command " \
                  "and --resume"
    assert signal.getsignal(signal.SIGTERM) == before, "main left its handler installed"
