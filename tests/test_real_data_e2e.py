"""End to end on the real formats: a tiny COCO (captions, instances, images) and RefCOCOg (refs(umd).p,
instances.json) in their own layouts -> every data source a real user can now make (`negenc generate t2i`,
`negenc generate referring`, `negenc data counterfactuals`, `negenc data omit-pairs`) -> the `sd1` and `clipseg`
starters (`negenc train --print-config`) trained with a user's paths on tiny CLIP / SD 1.x / CLIPSeg models -> `negenc publish --dry-run` -> `negenc t2i compare` and
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

DROP_IN_TERMS = ("mcq", "infonce", "distractor", "preserve", "preserve_embeds", "omit_states", "preserve_states")


def starter(capsys, target: str, path: Path) -> Path:
    """`negenc train --print-config TARGET` written to a file, as a user starts."""
    capsys.readouterr()
    assert main(["train", "--print-config", target]) == 0
    path.write_text(capsys.readouterr().out)
    return path


def user_settings(base: str, files: list[str], images: str, cache: str, out: str, steps: int = 3) -> list[str]:
    """What a user edits in a starter before training: the paths, and (here) a tiny run."""
    return ["model.base=" + base, "data.files=" + ",".join(files), "data.images=" + images, "data.cache_dir=" + cache,
            f"optim.steps={steps}", "optim.batch_size=8", "optim.lr=1e-3", "optim.warmup_steps=1",
            "run.out=" + out, f"run.save_every={steps}", "run.log_every=1"]


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

    # the sd1 and clipseg starters as printed, with a user's paths, a few steps each
    runs = {}
    for target, extra in (("sd1", []), ("clipseg", ["objective.seg_loss.model=" + m["clipseg"],
                                                     "objective.seg_loss.data=" + str(data / "referring.jsonl"),
                                                     "objective.seg_loss.batch_size=4", "objective.seg_loss.choice=1.0"])):
        config = starter(capsys, target, tmp_path / f"{target}.yaml")
        out = tmp_path / f"run_{target}"
        settings = user_settings(m["base"], [str(data / "t2i_cf.jsonl")], images, str(tmp_path / "cache"), str(out))
        assert main(["train", "--config", str(config), "--set", *settings, *extra, "--no-progress"]) == 0, \
            capsys.readouterr().err
        runs[target] = out
    log = [json.loads(x) for x in (runs["sd1"] / "train_log.jsonl").read_text().splitlines()]
    assert all(log[0]["eligible"][t] > 0 for t in DROP_IN_TERMS), log[0]
    steps = [row for row in log if "step" in row]
    assert len(steps) == 3 and all(math.isfinite(row[t]) for row in steps for t in DROP_IN_TERMS)
    assert steps[0]["omit_states"] > 0 and steps[0]["distractor"] > 0
    log = [json.loads(x) for x in (runs["clipseg"] / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["referring_records"] == len(referring)
    steps = [row for row in log if "step" in row]
    assert len(steps) == 3 and all(math.isfinite(row["seg_loss"]) and row["seg_loss"] > 0 for row in steps)
    sd1_model, seg_model = runs["sd1"] / "model", runs["clipseg"] / "model"

    # publish (dry run), then both drop-in evaluations on the tiny pipelines
    capsys.readouterr()
    assert main(["publish", str(sd1_model), "--repo-id", "org/tiny-negation", "--dry-run"]) == 0
    assert "would upload" in capsys.readouterr().out
    assert main(["t2i", "compare", "--prompts", "negation_v1", "--pipeline", m["sd"], "--encoder", str(sd1_model),
                 "--judge", m["blip"], "--seeds", "0", "--steps", "2", "--height", "32", "--width", "32", "--limit", "2",
                 "--resamples", "50", "--out", str(tmp_path / "t2i"), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "t2i" / "summary.json").read_text())
    assert list(summary["arms"]) == ["base", "base+negprompt", "omit", "swapped", "swapped+negprompt"]
    assert main(["seg", "compare", "--dataset", "refcocog", "--refs", str(coco["refs"]), "--instances",
                 str(coco["ref_instances"]), "--images", images, "--split", "val", "--model", m["clipseg"],
                 "--encoder", str(seg_model), "--batch-size", "2", "--resamples", "50", "--out", str(tmp_path / "seg"),
                 "--no-progress"]) == 0
    comparison = json.loads((tmp_path / "seg" / "comparison.json").read_text())
    assert comparison["paired_n"] == 2  # the two val sentences: evaluated, never trained on
    assert not any(Path(r.image).name == "COCO_train2014_000000000012.jpg" for r in referring)
