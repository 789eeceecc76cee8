"""An OS error on output (read-only folder, full disk, no permission) is one line naming the path and the
cause, exit 1, in every command; a torch write failure is reported as the disk problem it is; a failed
checkpoint save leaves nothing `--resume` would trust, and the resumed run ends where an uninterrupted one does.

Tests run as root, where chmod cannot make a folder read-only: the failures are simulated where the OS would
raise them (a write with no file name, as `write()` on a full disk raises; a mkdir on a read-only mount;
torch's own RuntimeError with the disk reported full)."""

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from negation_encoder import runio
from negation_encoder.cli import main
from negation_encoder.testing import tiny

from ._cli_helpers import one_line, read_only
from ._tiny_world import make_tiny_world

TORCH_FULL_DISK = "[enforce fail at inline_container.cc:672] . unexpected pos 4480 vs 4374"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("oserr")
    w = make_tiny_world(root, n=12)
    cfg = {"optim": {"steps": 3, "batch_size": 6, "lr": 1e-3, "warmup_steps": 1},
           "run": {"save_every": 1, "log_every": 1}, "data": {"cache_dir": str(root / "cache")}}
    (root / "cfg.json").write_text(json.dumps(cfg))
    w["cfg"] = str(root / "cfg.json")
    # a tiny CLIPSeg and one referring sample, for `negenc seg eval`
    tok = tiny.build_clip_tokenizer()
    tiny.build_clipseg(seed=0, projection_dim=24).save_pretrained(root / "clipseg")
    tok.save_pretrained(root / "clipseg")
    tiny.build_clip_image_processor(32).save_pretrained(root / "clipseg")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "im.png")
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(root / "m.png")
    (root / "seg.jsonl").write_text(json.dumps({"image": "im.png", "text": "a dog", "mask": "m.png"}) + "\n")
    return w


def _train(w, out, *extra):
    return ["train", "--config", w["cfg"], "--base", w["base"], "--data", w["data"], "--images", w["images"],
            "--out", str(out), "--no-progress", *extra]


def _seg(w, out):
    root = w["root"]
    return ["seg", "eval", "--dataset", "jsonl", "--jsonl", str(root / "seg.jsonl"), "--model", str(root / "clipseg"),
            "--out", str(out), "--no-progress"]


def _full_disk_under(monkeypatch, out: Path) -> None:
    """Every write_bytes under `out` fails as a full disk fails inside write(): an OSError with no file name."""
    real = Path.write_bytes

    def write_bytes(self, data):
        if str(self).startswith(str(out)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


@pytest.mark.parametrize("command", ["train", "seg", "eval"])
def test_a_read_only_out_is_one_line_exit_1(world, tmp_path, monkeypatch, capsys, command):
    out = tmp_path / "ro"
    if command == "eval":
        from ._eval_fixtures import write_data_root, write_model

        root, model = write_data_root(tmp_path / "data"), write_model(tmp_path / "model")
        argv = ["eval", "--model", str(model), "--data-root", str(root), "--bench", "valse", "--out", str(out),
                "--no-progress", "--device", "cpu"]
    else:
        argv = _train(world, out) if command == "train" else _seg(world, out)
    read_only(monkeypatch, out)
    err = one_line(capsys, code=1, argv=argv)
    assert err == f"negenc: run failed: {out}: Read-only file system [EROFS]", err


@pytest.mark.parametrize("command", ["train", "seg"])
def test_a_full_disk_names_the_file_it_could_not_write(world, tmp_path, monkeypatch, capsys, command):
    out = tmp_path / "full"
    _full_disk_under(monkeypatch, out)
    err = one_line(capsys, code=1, argv=_train(world, out) if command == "train" else _seg(world, out))
    name = "train_log.jsonl" if command == "train" else "run.json"
    assert err == f"negenc: run failed: {out / name}: No space left on device [ENOSPC]", err
    assert not list(out.rglob("*.tmp")), "a failed write left its temporary file"


def test_a_failed_checkpoint_save_is_the_disk_problem_and_resume_continues_exactly(world, tmp_path, monkeypatch,
                                                                                   capsys):
    from accelerate import Accelerator
    from safetensors.torch import load_file

    straight = tmp_path / "straight"
    assert main(_train(world, straight)) == 0
    out = tmp_path / "run"
    real = Accelerator.save_state

    def save_state(self, output_dir=None, **kwargs):
        if Path(output_dir).name == "step_2.tmp":  # torch writes part of the file, then the disk is full
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "model.safetensors").write_bytes(b"\0" * 100)
            raise RuntimeError(TORCH_FULL_DISK)
        return real(self, output_dir, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", save_state)
    monkeypatch.setattr(runio.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 2048))
    err = one_line(capsys, code=1, argv=_train(world, out))
    tmp = out / "checkpoints" / "step_2.tmp"
    assert err.startswith(f"negenc: run failed: {tmp}: No space left on device (2.0 KiB free at "), err
    assert err.endswith(") [ENOSPC]"), err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_1"], "a half-written step_2 is left"
    assert not (out / "model").exists()
    monkeypatch.undo()
    assert main(_train(world, out, "--resume")) == 0
    a, b = load_file(str(straight / "model" / "model.safetensors")), load_file(str(out / "model" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=f"{k} differs after the resume")
    steps = [json.loads(x).get("step") for x in (out / "train_log.jsonl").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3]


def test_a_torch_failure_on_a_writable_disk_stays_what_it_is(tmp_path):
    """Only a failure the place explains becomes an OSError: a writable folder with room keeps torch's error."""
    with pytest.raises(RuntimeError, match="unexpected pos"), runio.writing(tmp_path / "x.pt"):
        raise RuntimeError(TORCH_FULL_DISK)


def test_a_probe_write_that_fails_names_its_cause(tmp_path, monkeypatch):
    import builtins

    real_open = builtins.open

    def fake_open(file, mode="r", *args, **kwargs):
        if ".negenc-write-probe-" in str(file):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(OSError) as e, runio.writing(tmp_path / "x.pt"):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    assert runio.os_error_line(e.value) == f"{tmp_path / 'x.pt'}: Permission denied [EACCES]"
