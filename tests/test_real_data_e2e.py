"""End to end on the real formats: a tiny COCO (captions, instances, images) and RefCOCOg (refs(umd).p,
instances.json) in their own layouts -> every data source a real user can now make (`negenc generate t2i`,
`negenc generate referring`, `negenc data counterfactuals`, `negenc data omit-pairs`) -> `negenc train` with the
drop-in terms on tiny CLIP / SD 1.x / CLIPSeg models -> `negenc publish --dry-run` -> `negenc t2i compare` and
`negenc seg compare` (RefCOCOg's val split, which training never saw) on the tiny pipelines. All in-process."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from negation_encoder.cli import main
from negation_encoder.data import read_records
from negation_encoder.data.referring import read_referring
from negation_encoder.testing import tiny

from ._coco_world import write_coco_world

DROP_IN_TERMS = ("mcq", "infonce", "distractor", "preserve", "omit_states", "preserve_states")


def drop_in_train_config(base: str, files: list[str], images: str, clipseg: str, referring: list[str], out: str,
                         cache: str, steps: int = 3) -> dict:
    """A TrainConfig (as a --config mapping) for an encoder dropped into SD 1.x and CLIPSeg: the contrastive
    terms, the counterfactual-image term, the regularizers, omit_states / preserve_states read as SD 1.x reads
    prompts (77 positions, no attention mask) and seg_loss through the frozen CLIPSeg.

    A stand-in for `negenc train --print-config sd1` / `clipseg`: once those print such a config, build this
    from their output (set model.base, data.*, seg_loss.model/data, run.*) instead of writing it here."""
    return {
        "model": {"base": base},
        "data": {"files": files, "images": images, "cache_dir": cache},
        "optim": {"steps": steps, "batch_size": 8, "lr": 1e-3, "warmup_steps": 1},
        "pipeline": {"length": 77, "attention_mask": False},
        "objective": {"mcq": 1.0, "infonce": 1.0, "distractor": {"weight": 1.0, "max_images": 2}, "preserve": 1.0,
                      "omit_states": {"weight": 1.0, "types": ["absence"]}, "preserve_states": 1.0,
                      "seg_loss": {"weight": 1.0, "model": clipseg, "data": referring, "batch_size": 4, "choice": 1.0}},
        "run": {"out": out, "save_every": steps, "log_every": 1},
    }


def _models(root: Path) -> dict:
    """A tiny CLIP base, an SD 1.x pipeline and a CLIPSeg whose text towers it fits (text 32, projection 24),
    and a BLIP judge; one tokenizer for all, as in the real family."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPSegProcessor, ViTImageProcessor

    tok = tiny.build_clip_tokenizer()
    base = root / "base"
    tiny.build_clip_model(seed=0, tokenizer=tok).save_pretrained(base)
    tok.save_pretrained(base)
    tiny.build_clip_image_processor(32).save_pretrained(base)
    seg = root / "clipseg"
    tiny.build_clipseg(seed=0, projection_dim=24).save_pretrained(seg)
    CLIPSegProcessor(image_processor=ViTImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok).save_pretrained(seg)
    StableDiffusionPipeline(**tiny.build_sd_components(seed=0), requires_safety_checker=False).save_pretrained(root / "sd")
    judge, processor = tiny.build_blip_vqa(seed=0)
    judge.save_pretrained(root / "blip")
    processor.save_pretrained(root / "blip")
    return {"base": str(base), "clipseg": str(seg), "sd": str(root / "sd"), "blip": str(root / "blip")}


@pytest.mark.slow
def test_real_formats_to_data_to_training_to_both_drop_in_evaluations(tmp_path, capsys):
    coco = write_coco_world(tmp_path / "coco")
    m = _models(tmp_path)
    data = tmp_path / "data"
    images, instances = str(coco["images"]), str(coco["instances"])

    # every data source, from the files in their real layouts
    assert main(["generate", "t2i", "--coco-captions", str(coco["captions"]), "--instances", instances, "--images",
                 images, "--out", str(data / "t2i.jsonl"), "--no-progress"]) == 0
    assert main(["generate", "referring", "--refs", str(coco["refs"]), "--instances", str(coco["ref_instances"]),
                 "--images", images, "--exclude", str(coco["negrefcocog"]), "--out", str(data / "referring.jsonl"),
                 "--no-progress"]) == 0
    assert main(["data", "counterfactuals", str(data / "t2i.jsonl"), str(data / "t2i_cf.jsonl"), "--instances",
                 instances, "--no-progress"]) == 0
    assert main(["data", "omit-pairs", str(data / "t2i_cf.jsonl"), str(data / "omit.jsonl"), "--types", "absence",
                 "--no-progress"]) == 0
    records = read_records(data / "t2i_cf.jsonl")
    referring = read_referring(data / "referring.jsonl")
    assert sum(bool(r.distractor_images) for r in records) >= len(records) // 2
    assert {r.negated for r in referring} == {True, False}
    omit = [json.loads(x) for x in (data / "omit.jsonl").read_text().splitlines()]
    assert sum(row["trains"] for row in omit) == len(records)  # every t2i prompt feeds omit_states
    capsys.readouterr()

    # a few steps with every drop-in term
    cfg = drop_in_train_config(m["base"], [str(data / "t2i_cf.jsonl")], images, m["clipseg"],
                               [str(data / "referring.jsonl")], str(tmp_path / "run"), str(tmp_path / "cache"))
    (tmp_path / "train.json").write_text(json.dumps(cfg))
    assert main(["train", "--config", str(tmp_path / "train.json"), "--no-progress"]) == 0, capsys.readouterr().err
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert all(log[0]["eligible"][t] > 0 for t in DROP_IN_TERMS), log[0]
    assert log[0]["referring_records"] == len(referring)
    steps = [row for row in log if "step" in row]
    assert len(steps) == 3 and all(math.isfinite(row[t]) for row in steps for t in (*DROP_IN_TERMS, "seg_loss"))
    assert steps[0]["seg_loss"] > 0 and steps[0]["omit_states"] > 0
    model = tmp_path / "run" / "model"

    # publish (dry run), then both drop-in evaluations on the tiny pipelines
    capsys.readouterr()
    assert main(["publish", str(model), "--repo-id", "org/tiny-negation", "--dry-run"]) == 0
    assert "would upload" in capsys.readouterr().out
    assert main(["t2i", "compare", "--prompts", "negation_v1", "--pipeline", m["sd"], "--encoder", str(model),
                 "--judge", m["blip"], "--seeds", "0", "--steps", "2", "--height", "32", "--width", "32", "--limit", "2",
                 "--resamples", "50", "--out", str(tmp_path / "t2i"), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "t2i" / "summary.json").read_text())
    assert list(summary["arms"]) == ["base", "base+negprompt", "omit", "swapped", "swapped+negprompt"]
    assert main(["seg", "compare", "--dataset", "refcocog", "--refs", str(coco["refs"]), "--instances",
                 str(coco["ref_instances"]), "--images", images, "--split", "val", "--model", m["clipseg"],
                 "--encoder", str(model), "--batch-size", "2", "--resamples", "50", "--out", str(tmp_path / "seg"),
                 "--no-progress"]) == 0
    comparison = json.loads((tmp_path / "seg" / "comparison.json").read_text())
    assert comparison["paired_n"] == 2  # the two val sentences: evaluated, never trained on
    assert not any(Path(r.image).name == "COCO_train2014_000000000012.jpg" for r in referring)
