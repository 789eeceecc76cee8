"""Two CPU processes (gloo, via torchrun as accelerate launch would) train the same weights as one."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from negation_encoder.training import TrainConfig, train

from ._tiny_world import make_tiny_world


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    world = make_tiny_world(tmp_path / "world")
    common = {"model": {"base": world["base"]},
              "data": {"files": [world["data"]], "images": world["images"], "cache_dir": str(tmp_path / "cache")},
              "optim": {"steps": 4, "batch_size": 8, "lr": 1e-3, "warmup_steps": 1},
              "objective": {"infonce": {"weight": 1.0, "hard_negatives": True}, "mcq": 1.0, "omni_presence": 0.5,
                            "omni_absence": 0.5, "preserve": 0.5}}
    one = train(TrainConfig.from_dict({**common, "run": {"out": str(tmp_path / "one"), "save_every": 4,
                                                         "log_every": 1}}), progress=False)
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    cfg = json.dumps({**common, "run": {"out": str(tmp_path / "two"), "save_every": 4, "log_every": 1}})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29517",
                          os.path.join(os.path.dirname(__file__), "_dist_train.py"), cfg],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    from transformers import CLIPModel

    a = CLIPModel.from_pretrained(one.out / "model").state_dict()
    b = CLIPModel.from_pretrained(tmp_path / "two" / "model").state_dict()
    base = CLIPModel.from_pretrained(world["base"]).state_dict()
    moved = [k for k in a if k.startswith("text_model.") and not torch.equal(a[k], base[k])]
    assert moved, "training changed nothing"
    for k in a:
        if k.endswith("self_attn.k_proj.bias"):
            # A key bias shifts every attention logit of a row equally, so its true gradient is 0 and
            # what it gets is float noise, which Adam's normalisation turns into lr-sized steps.
            continue
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=f"{k}: 2 processes differ from 1")
