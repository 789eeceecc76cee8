"""eval_seg runner end to end with a tiny CLIPSeg loaded through from_pretrained: original and swapped
against a reference built by hand, resume equal to an uninterrupted run, and the CLI's exit 2."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from eval_seg import DatasetConfig, SegEvalConfig, evaluate
from negation_encoder.cli import main
from negation_encoder.testing import tiny
from tests.test_seg_metrics import T_PY, _naive

N = 5
METRIC_KEYS = ("fgiou_0.3", "iou_bin_0.3", "miou_0.3", "fgiou_0.1", "miou_best", "ap")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    tok = tiny.build_clip_tokenizer()
    seg = tiny.build_clipseg(seed=0, projection_dim=24)
    seg.save_pretrained(root / "clipseg")
    tok.save_pretrained(root / "clipseg")
    tiny.build_clip_image_processor(32).save_pretrained(root / "clipseg")
    tiny.build_clip_model(seed=1, projection_dim=24).save_pretrained(root / "encoder")
    tiny.build_clip_model(seed=1, projection_dim=16).save_pretrained(root / "bad_encoder")
    rng = np.random.default_rng(0)
    texts = ["a dog", "a cat without a hat", "no people on the street", "a red car", "the man not sitting"]
    lines = []
    for i, text in enumerate(texts):
        h, w = 24 + 4 * i, 30 - 2 * i
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / f"im{i}.png")
        mask = np.zeros((h, w), np.uint8)
        mask[2 + i: 12 + i, 3: 14 + i] = 255
        Image.fromarray(mask).save(root / f"m{i}.png")
        lines.append(json.dumps({"id": f"s{i}", "image": f"im{i}.png", "text": text, "mask": f"m{i}.png"}))
    (root / "data.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _cfg(world, out, encoder=None, **kw):
    return SegEvalConfig(dataset=DatasetConfig(kind="jsonl", jsonl=str(world / "data.jsonl")),
                         model=str(world / "clipseg"), encoder=encoder, out=str(out), batch_size=2,
                         progress=False, overlays=2, **kw)


def _reference(world, encoder=None):
    """Logits from the model and processor driven by hand (same fixed batches of 2), then the naive
    per-threshold metrics of test_seg_metrics."""
    from transformers import CLIPModel, CLIPSegForImageSegmentation, CLIPSegProcessor

    from integrations import swap_clipseg_text_encoder

    seg = CLIPSegForImageSegmentation.from_pretrained(world / "clipseg").eval()
    if encoder:
        swap_clipseg_text_encoder(seg, CLIPModel.from_pretrained(encoder))
    proc = CLIPSegProcessor.from_pretrained(world / "clipseg")
    rows = [json.loads(x) for x in (world / "data.jsonl").read_text().splitlines()]
    logits, masks = [], []
    for i in range(0, N, 2):
        batch = rows[i: i + 2]
        enc = proc(text=[r["text"] for r in batch], images=[Image.open(world / r["image"]).convert("RGB") for r in batch],
                   padding=True, return_tensors="pt")
        with torch.no_grad():
            logits += list(seg(**enc).logits.reshape(len(batch), 32, 32))
        masks += [torch.from_numpy(np.asarray(Image.open(world / r["mask"])) > 0) for r in batch]
    _, fg, biou, miou, ap = _naive(logits, masks)
    j = {t: T_PY.index(t) for t in (0.1, 0.3)}
    return {"fgiou_0.3": fg[j[0.3]], "iou_bin_0.3": biou[j[0.3]], "miou_0.3": miou[j[0.3]],
            "fgiou_0.1": fg[j[0.1]], "miou_best": miou.max(), "ap": ap}


def test_original_and_swapped_match_hand_reference(world, tmp_path):
    orig = evaluate(_cfg(world, tmp_path / "orig"))
    swap = evaluate(_cfg(world, tmp_path / "swap", encoder=str(world / "encoder")))
    ref_o, ref_s = _reference(world), _reference(world, world / "encoder")
    for k in METRIC_KEYS:
        assert orig.metrics[k] == pytest.approx(ref_o[k], abs=1e-9), f"original {k}"
        assert swap.metrics[k] == pytest.approx(ref_s[k], abs=1e-9), f"swapped {k}"
    assert orig.metrics["fgiou_0.3"] != swap.metrics["fgiou_0.3"], "the swap changed nothing"
    saved = json.loads((tmp_path / "orig" / "metrics.json").read_text())
    assert saved["miou_0.3"] == orig.metrics["miou_0.3"] and saved["info_samples"] == N
    assert (tmp_path / "orig" / "summary.md").read_text().startswith("# CLIPSeg (original) on jsonl")
    with Image.open(tmp_path / "orig" / "overlays.png") as im:
        assert im.size[0] > 2 * 224 and im.size[1] >= 2 * 224  # 2 rows (best, worst) of 2 tiles


def test_resume_after_kill_equals_uninterrupted(world, tmp_path):
    full = evaluate(_cfg(world, tmp_path / "full"))
    part = tmp_path / "part"
    shutil.copytree(tmp_path / "full", part)
    lines = (part / "samples.jsonl").read_text().splitlines(keepends=True)
    (part / "samples.jsonl").write_text("".join(lines[:3]) + lines[3][:25])  # killed while writing line 4
    (part / "metrics.json").unlink()
    resumed = evaluate(_cfg(world, part, resume=True))
    assert (resumed.computed, resumed.reused) == (2, 3)
    assert resumed.metrics == full.metrics
    assert (part / "samples.jsonl").read_text() == (tmp_path / "full" / "samples.jsonl").read_text()
    again = evaluate(_cfg(world, part, resume=True))
    assert again.computed == 0 and again.metrics == full.metrics


def test_cli_compare_pairs_samples(world, tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(["seg", "compare", "--dataset", "jsonl", "--jsonl", str(world / "data.jsonl"),
               "--model", str(world / "clipseg"), "--encoder", str(world / "encoder"), "--batch-size", "2",
               "--out", str(out), "--no-progress", "--resamples", "200", "--seed", "3"])
    assert rc == 0, capsys.readouterr().err
    c = json.loads((out / "comparison.json").read_text())
    ious = {arm: [json.loads(x)["iou_0.3"] for x in (out / arm / "samples.jsonl").read_text().splitlines()]
            for arm in ("original", "swapped")}
    assert c["paired_n"] == N
    assert c["paired_iou_0.3_mean_diff"] == pytest.approx(np.mean(ious["swapped"]) - np.mean(ious["original"]))
    assert c["paired_iou_0.3_ci_low"] <= c["paired_iou_0.3_mean_diff"] <= c["paired_iou_0.3_ci_high"]
    assert c["original_miou_0.3"] == pytest.approx(np.mean(ious["original"]))  # per-sample mIoU


def test_cli_negation_only_counts(world, tmp_path, capsys):
    rc = main(["seg", "eval", "--dataset", "jsonl", "--jsonl", str(world / "data.jsonl"), "--model",
               str(world / "clipseg"), "--negation-only", "--out", str(tmp_path / "neg"), "--no-progress"])
    assert rc == 0
    saved = json.loads((tmp_path / "neg" / "metrics.json").read_text())
    assert (saved["n_samples"], saved["info_samples_before_filter"]) == (3, N)


@pytest.mark.parametrize("case", ["missing_file", "bad_encoder", "bad_line", "bert_encoder", "t5_encoder"])
def test_cli_bad_input_exits_2_with_one_line_before_compute(world, tmp_path, capsys, case):
    data = world / "data.jsonl"
    encoder = []
    if case in ("bert_encoder", "t5_encoder"):  # a 512-wide CLIPSeg would load either as a random CLIP tower
        kind = case.split("_")[0]
        tiny.build_non_clip_text_model(kind).save_pretrained(tmp_path / kind)
        encoder = ["--encoder", str(tmp_path / kind)]
        name = {"bert": "BertModel", "t5": "T5EncoderModel"}[kind]
        culprit = f"negenc: error: --encoder {tmp_path / kind}: a {name} folder (model_type '{kind}'), not a CLIP text tower"
    elif case == "missing_file":
        data = tmp_path / "nope.jsonl"
        culprit = "nope.jsonl: file not found"
    elif case == "bad_encoder":
        encoder = ["--encoder", str(world / "bad_encoder")]
        culprit = "bad_encoder does not fit CLIPSeg"
    else:
        data = tmp_path / "bad.jsonl"
        data.write_text((world / "data.jsonl").read_text().replace('"text"', '"txt"', 1))
        culprit = "bad.jsonl:1: expected string fields image, text, mask; missing text"
    out = tmp_path / "out"
    rc = main(["seg", "eval", "--dataset", "jsonl", "--jsonl", str(data), "--images", str(world), "--model",
               str(world / "clipseg"), *encoder, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and culprit in err, err
    assert not (out / "samples.jsonl").exists()


def test_split_route_through_the_cli_matches_segment_by_hand(world, tmp_path, capsys):
    """`negenc seg eval --route split`: per-sample IoU@0.3 from integrations.segment's split probabilities,
    with the route's weight read from the model folder; without a fitted route: one line, exit 2."""
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    from eval_seg.metrics import histograms_from_probabilities, sample_iou
    from integrations import SplitRoute, segment

    model_dir = tmp_path / "clipseg"
    shutil.copytree(world / "clipseg", model_dir)
    args = ["seg", "eval", "--dataset", "jsonl", "--jsonl", str(world / "data.jsonl"), "--model", str(model_dir),
            "--route", "split", "--batch-size", "2", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "none")]) == 2
    assert "--route split: " in capsys.readouterr().err and not (tmp_path / "none" / "samples.jsonl").exists()
    SplitRoute(weight=0.5).save(model_dir)
    assert main([*args, "--out", str(tmp_path / "o")]) == 0
    got = {json.loads(x)["id"]: json.loads(x)["iou_0.3"] for x in (tmp_path / "o" / "samples.jsonl").open()}
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["info_arm"] == "split"
    seg = CLIPSegForImageSegmentation.from_pretrained(model_dir).eval()
    proc = CLIPSegProcessor.from_pretrained(model_dir)
    rows = [json.loads(x) for x in (world / "data.jsonl").open()]
    for i in range(0, len(rows), 2):
        chunk = rows[i: i + 2]
        images = [Image.open(world / r["image"]).convert("RGB") for r in chunk]
        probs = segment(seg, proc, images, [r["text"] for r in chunk], route="split", split_route=SplitRoute(0.5))
        masks = [torch.from_numpy(np.array(Image.open(world / r["mask"]))) for r in chunk]
        ious = sample_iou(histograms_from_probabilities(probs, masks), 0.3)
        for r, v in zip(chunk, ious.tolist(), strict=True):
            assert got[r["id"]] == pytest.approx(v), r["text"]
