"""`negenc generate referring`: ReferringRecords with masks from RefCOCOg's train split (refs(umd).p +
instances.json + COCO images, tests/_coco_world.py), never from an evaluation split or an evaluation file's refs
and images; masks decoded from polygons and RLE; resumable, sharded, one-line errors."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from negation_encoder.cli import main
from negation_encoder.data.referring import read_referring
from negation_encoder.splitting import has_negation_cue

from ._chat_server import chat_server
from ._coco_world import REFS, ann_id, expected_mask, file_name, write_coco_world

TRAIN_REFS = {r[0] for r in REFS if r[3] == "train"}
EVAL_REFS = {r[0] for r in REFS if r[3] != "train"}


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return write_coco_world(tmp_path_factory.mktemp("refcoco"))


def _referring(coco, out, *extra):
    return main(["generate", "referring", "--refs", str(coco["refs"]), "--instances", str(coco["ref_instances"]),
                 "--images", str(coco["images"]), "--out", str(out), "--no-progress", *extra])


def _ref_ids(records) -> set[int]:
    return {int(r.id.split(":")[1]) for r in records}


def _mask(out: Path, key: str) -> np.ndarray:
    return np.asarray(Image.open(out.parent / key)) > 0


def test_records_with_masks_from_the_train_split(coco, tmp_path):
    out = tmp_path / "ref" / "referring.jsonl"
    assert _referring(coco, out) == 0
    recs = read_referring(out)
    by_id = {r.id: r for r in recs}
    assert _ref_ids(recs) == TRAIN_REFS
    for r in recs:
        image_id, index = next((i, k) for ref, i, k, _, _ in REFS if ref == int(r.id.split(":")[1]))
        assert (out.parent / r.image).resolve() == (coco["images"] / file_name(image_id)).resolve()
        assert np.array_equal(_mask(out, r.mask), expected_mask(image_id, index)), r.id  # polygons and RLE alike
        assert r.negated == has_negation_cue(r.text)
        if r.negated:
            assert r.affirmative is None or not has_negation_cue(r.affirmative)
    # two people in image 1: the templated negation names the man by excluding the other one
    neg = by_id["refcocog:100:neg"]
    assert neg.negated and neg.affirmative in ("the man on the left", "a man in black")
    assert re.search(r"\bman\b", neg.text) and ("right" in neg.text or "the man on the right" in neg.text), neg.text
    assert np.array_equal(_mask(out, neg.other_mask), expected_mask(1, 1))
    # the dog whose mask is a compressed RLE string, and its twin
    assert np.array_equal(_mask(out, by_id["refcocog:102:aff"].mask), expected_mask(2, 0))
    assert by_id["refcocog:102:neg"].other_mask.endswith(f"ann-{ann_id(2, 1)}.png")
    # a sentence that already negates is kept as written (NegRefCOCOg's style)
    assert by_id["refcocog:101:sent0"].text == "the man not wearing a hat"
    # three cars (and a crowd region): no templated negation, the affirmative has no other_mask
    assert "refcocog:106:neg" not in by_id and by_id["refcocog:106:aff"].other_mask is None
    stats = json.loads((out.parent / "referring.jsonl.stats.json").read_text())
    assert stats["rejects"]["split:val"] == 2 and stats["rejects"]["split:test"] == 2
    # the file is what seg_loss reads: every path resolves under its folder
    from negation_encoder.training.terms.seg_loss import SegConfig, check_seg_inputs

    class _Base:
        class text_config:  # noqa: N801 - a stand-in config object
            hidden_size = 32

        projection_dim = 24

    from negation_encoder.testing import tiny

    tiny.build_clipseg(seed=0, projection_dim=24).save_pretrained(tmp_path / "clipseg")
    inputs = check_seg_inputs(SegConfig(model=str(tmp_path / "clipseg"), data=[str(out)]), _Base)
    assert len(inputs.records) == len(recs)


def test_never_from_an_evaluation_split_or_an_evaluation_file(coco, tmp_path, capsys):
    out = tmp_path / "ex.jsonl"
    assert _referring(coco, out, "--exclude", str(coco["negrefcocog"])) == 0
    recs = read_referring(out)
    # NegRefCOCOg names image 3 (a train image: refs 104, 105) and image 12 (val)
    assert _ref_ids(recs) == TRAIN_REFS - {104, 105}
    assert not _ref_ids(recs) & EVAL_REFS
    images = {Path(r.image).name for r in recs}
    assert not images & {file_name(3), file_name(12), file_name(13)}
    masks = {p.name for p in (tmp_path / "ex.jsonl.masks").iterdir()}
    assert not masks & {f"ann-{ann_id(i, k)}.png" for i in (3, 12, 13) for k in range(2)}
    stats = json.loads((tmp_path / "ex.jsonl.stats.json").read_text())
    assert stats["rejects"]["excluded:evaluation_image"] == 2
    # by ref id, from a second file (a JSON list of refs, as another evaluation may name them)
    ids = tmp_path / "eval_refs.json"
    ids.write_text(json.dumps([{"ref_id": 102, "sentences": []}]))
    out2 = tmp_path / "ex2.jsonl"
    assert _referring(coco, out2, "--exclude", str(coco["negrefcocog"]), "--exclude", str(ids)) == 0
    assert _ref_ids(read_referring(out2)) == TRAIN_REFS - {102, 104, 105}
    assert json.loads((tmp_path / "ex2.jsonl.stats.json").read_text())["rejects"]["excluded:evaluation_ref_id"] == 1
    # a file that names nothing to exclude is refused, not taken as excluding nothing
    empty = tmp_path / "phrases.json"
    empty.write_text(json.dumps([{"phrase": "the cup that is not red"}]))
    assert _referring(coco, tmp_path / "no.jsonl", "--exclude", str(empty)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"--exclude {empty}: names no ref_id, image_id or image file" in err
    assert not (tmp_path / "no.jsonl").exists()


def test_resume_after_a_kill_and_shards(coco, tmp_path):
    full = tmp_path / "full.jsonl"
    assert _referring(coco, full) == 0
    part = tmp_path / "part.jsonl"
    assert _referring(coco, part, "--limit", "3", "--batch-size", "1") == 0
    lines = part.read_text().splitlines(keepends=True)
    part.write_text("".join(lines) + lines[-1][:25])  # a torn line
    assert _referring(coco, part, "--batch-size", "1") == 0
    assert part.read_text() == full.read_text().replace("full.jsonl.masks", "part.jsonl.masks")
    shards = [tmp_path / f"s{i}.jsonl" for i in range(2)]
    for i, s in enumerate(shards):
        assert _referring(coco, s, "--shard", f"{i}/2") == 0
    a, b = (_ref_ids(read_referring(s)) for s in shards)
    assert a and b and not (a & b) and a | b == TRAIN_REFS


def test_bad_inputs_are_one_line_exit_2_before_anything_is_written(coco, tmp_path, capsys):
    refs = pickle.loads(Path(coco["refs"]).read_bytes())
    inst = json.loads(Path(coco["ref_instances"]).read_text())

    def variant(name, refs_obj=None, inst_obj=None):
        r, i = tmp_path / f"{name}.p", tmp_path / f"{name}.json"
        r.write_bytes(pickle.dumps(refs if refs_obj is None else refs_obj))
        i.write_text(json.dumps(inst if inst_obj is None else inst_obj))
        return str(r), str(i)

    bad_ann = [dict(refs[0], ann_id=999999), *refs[1:]]
    bad_seg = json.loads(json.dumps(inst))
    dog = next(a for a in bad_seg["annotations"] if a["id"] == ann_id(2, 0))
    dog["segmentation"]["counts"] = dog["segmentation"]["counts"][:-3]
    only_eval = [r for r in refs if r["split"] != "train"]
    import datetime

    cases = [
        (variant("ann", bad_ann), "ann.p: ref 100: ann_id 999999 is not in"),
        (variant("seg", inst_obj=bad_seg), f"annotation {ann_id(2, 0)}: "),
        (variant("eval", only_eval), "no usable train refs (left out: split:test 2, split:val 2)"),
        (variant("class", [datetime.date(2020, 1, 1)]), "not a readable refs pickle"),
    ]
    for (refs_path, inst_path), needle in cases:
        out = tmp_path / "gen" / "r.jsonl"
        assert main(["generate", "referring", "--refs", refs_path, "--instances", inst_path, "--images",
                     str(coco["images"]), "--out", str(out), "--no-progress"]) == 2, needle
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and needle in err, (needle, err)
        assert not out.parent.exists()
    missing = tmp_path / "images"
    missing.mkdir()
    assert main(["generate", "referring", "--refs", str(coco["refs"]), "--instances", str(coco["ref_instances"]),
                 "--images", str(missing), "--out", str(tmp_path / "m.jsonl"), "--no-progress"]) == 2
    assert f"image '{file_name(1)}' (image_id 1, ref 100) not found in {missing}" in capsys.readouterr().err
    assert main(["generate", "referring", "--instances", str(coco["ref_instances"]), "--images", str(coco["images"]),
                 "--out", str(tmp_path / "m.jsonl")]) == 2
    assert "referring needs --refs" in capsys.readouterr().err


def test_an_llm_rewrites_the_templated_negations_and_each_is_checked(coco, tmp_path):
    def answer(content: str) -> str:
        noun = re.search(r"point at one (.+?) in a photo", content).group(1)
        return f"the {noun} over there, not that one" if noun == "man" else "that thing"  # the dogs' are rejected

    out = tmp_path / "llm.jsonl"
    with chat_server(answer) as url:
        assert _referring(coco, out, "--llm", f"openai:tiny@{url}") == 0
    by_id = {r.id: r for r in read_referring(out)}
    assert by_id["refcocog:100:neg"].text == "the man over there, not that one"
    assert "refcocog:102:neg" not in by_id and "refcocog:102:aff" in by_id  # a rejected rewrite drops only itself
    stats = json.loads((tmp_path / "llm.jsonl.stats.json").read_text())
    assert stats["stages"]["rewrite_ok"] >= 2 and stats["rejects"]["rewrite:no_concept"] >= 2
