"""`negenc data omit-pairs` (what omit_states trains on, by the term's own rule) and `negenc data counterfactuals`
(COCO images that contain each absence record's negated concept, from instances in their real layout)."""

from __future__ import annotations

import json

import pytest

from negation_encoder.cli import main
from negation_encoder.data import NegationRecord, read_records, write_records

from ._coco_world import file_name, write_coco_world


def _rec(i, caption, negated, kind="absence", concept="cat", image=None, **extra):
    return NegationRecord(id=f"r{i}", image=image or f"{i}.png", caption=caption, negated_caption=negated,
                          negation_type=kind, negated_concept=concept, source="test", **extra)


OMIT_RECORDS = [
    _rec(0, "a dog on a sofa", "a dog on a sofa with no cat"),
    _rec(1, "the red cup", "the cup that is not red", kind="attribute", concept="red"),
    _rec(2, "a dog on a sofa", "a sofa with no dog", kind="presence", concept="dog"),
    _rec(3, "a purple cow", "never seen before: a purple cow", concept="cow"),  # the splitter is unsure
    _rec(4, "a street", "a street with no cars", concept="car"),
]


def _report(path):
    return {row["id"]: row for row in map(json.loads, path.read_text().splitlines())}


def test_omit_pairs_reports_what_the_term_trains_on(tmp_path, capsys):
    records = tmp_path / "in.jsonl"
    write_records(records, OMIT_RECORDS)
    out = tmp_path / "omit.jsonl"
    assert main(["data", "omit-pairs", str(records), str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "omit_states trains on 3 of the 5 records" in printed and "No separate file is needed" in printed
    rows = _report(out)
    assert rows["r0"]["trains"] and rows["r0"]["affirmative"] == "a dog on a sofa" and rows["r0"]["negated"] == ["cat"]
    assert rows["r1"]["trains"] and rows["r1"]["affirmative"] == "the cup" and rows["r1"]["negated"] == ["red cup"]
    assert rows["r2"]["text"] == "a dog on a sofa" and rows["r2"]["skipped"].startswith("no negation")
    assert rows["r3"]["skipped"].startswith("unsure: ")
    stats = json.loads((tmp_path / "omit.jsonl.stats.json").read_text())
    assert stats["rejects"] == {"skipped:unsure": 1, "skipped:no negation": 1}
    # with the types the default recipe trains on, the attribute record is skipped for its type
    typed = tmp_path / "typed.jsonl"
    assert main(["data", "omit-pairs", str(records), str(typed), "--types", "absence", "--no-progress"]) == 0
    assert _report(typed)["r1"]["skipped"] == "type: attribute is not in omit_states.types ['absence']"
    # the same rule as training: the trainer's own eligibility gives the same records
    from negation_encoder.training.batching import examples_from_records
    from negation_encoder.training.terms.omit_states import OmitStates, OmitStatesConfig

    term = OmitStates(OmitStatesConfig(types=["absence"]), None)
    fed = [ex for ex in examples_from_records(OMIT_RECORDS, [term])]
    assert [("omit_states" in ex.eligible) for ex in fed] == [_report(typed)[r.id]["trains"] for r in OMIT_RECORDS]
    assert [ex.affirmative for ex in fed if "omit_states" in ex.eligible] == \
        [row["affirmative"] for row in _report(typed).values() if row["trains"]]


def test_omit_pairs_resumes_and_refuses_bad_input(tmp_path, capsys):
    records = tmp_path / "in.jsonl"
    write_records(records, OMIT_RECORDS)
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    assert main(["data", "omit-pairs", str(records), str(full), "--no-progress"]) == 0
    assert main(["data", "omit-pairs", str(records), str(part), "--shard", "0/2", "--no-progress"]) == 0
    part.write_text(part.read_text() + '{"id": "r9", "sou')  # a torn line
    assert main(["data", "omit-pairs", str(records), str(part), "--no-progress"]) == 0
    assert _report(part) == _report(full)
    capsys.readouterr()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(OMIT_RECORDS[0].to_json() + "\n{\"id\": 3}\n")
    for argv, needle in ((["omit-pairs", str(bad), str(tmp_path / "o.jsonl")], f"{bad}:2: missing required field"),
                         (["omit-pairs", str(records), str(records)], "the output cannot be the input file"),
                         (["omit-pairs", str(records), str(tmp_path / "o.jsonl"), "--types", "colour"],
                          "types must name negation types")):
        assert main(["data", *argv, "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and needle in err, (needle, err)
    assert not (tmp_path / "o.jsonl").exists()


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return write_coco_world(tmp_path_factory.mktemp("cf"))


def _cf_records():
    return [
        _rec(0, "A cup on a table.", "a cup on a table with no fork", concept="fork", image=file_name(3)),
        _rec(1, "A cat sitting on a couch.", "a cat on a couch with no dogs", concept="dogs", image=file_name(5)),
        _rec(2, "a bus on the street", "a bus on the street with no man", concept="man", image=file_name(11)),
        _rec(3, "A cup on a table.", "a cup on a table, no lamp", concept="lamp", image=file_name(3)),
        _rec(4, "a dog and a cat", "a dog without a cat", kind="presence", concept="cat", image=file_name(9)),
        _rec(5, "A cup on a table.", "a cup on a table with no fork", concept="fork", image=file_name(3),
             distractor_images=["mine.png"]),
    ]


def test_counterfactuals_add_images_with_the_negated_concept(coco, tmp_path, capsys):
    records = tmp_path / "in.jsonl"
    write_records(records, _cf_records())
    out = tmp_path / "cf.jsonl"
    assert main(["data", "counterfactuals", str(records), str(out), "--instances", str(coco["instances"]), "--k", "3",
                 "--no-progress"]) == 0
    assert "records got" in capsys.readouterr().out
    got = {r.id: r for r in read_records(out)}
    # the only fork is in image 8, which shares the caption's cup and table
    assert got["r0"].distractor_images == [file_name(8)]
    assert got["r0"].provenance["distractor_category"] == "fork"
    # "dogs" is the dog category: the image sharing the caption's cat first (9), then one extra object each, by key
    assert got["r1"].distractor_images == [file_name(9), file_name(2), file_name(6)]
    # "man" is a person; the caption's bus is shared by image 11 only, which is the record's own: never returned
    assert file_name(11) not in got["r2"].distractor_images and len(got["r2"].distractor_images) == 3
    assert got["r3"].distractor_images is None and got["r4"].distractor_images is None  # not a category; presence
    assert got["r5"].distractor_images == ["mine.png"]  # kept unless --replace
    stats = json.loads((tmp_path / "cf.jsonl.stats.json").read_text())
    assert stats["rejects"] == {"concept_not_a_category": 1}
    assert stats["stages"]["passed:presence"] == 1 and stats["stages"]["kept_existing"] == 1
    # --replace; --images keeps only images on disk (image 8 is gone: no fork image is left)
    images = tmp_path / "some"
    images.mkdir()
    for i in (2, 6, 9):
        (images / file_name(i)).write_bytes((coco["images"] / file_name(i)).read_bytes())
    again = tmp_path / "cf2.jsonl"
    assert main(["data", "counterfactuals", str(records), str(again), "--instances", str(coco["instances"]), "--images",
                 str(images), "--replace", "--no-progress"]) == 0
    got = {r.id: r for r in read_records(again)}
    assert got["r0"].distractor_images is None and got["r5"].distractor_images is None  # re-mined: none is there
    stats = json.loads((tmp_path / "cf2.jsonl.stats.json").read_text())
    assert stats["rejects"]["no_image_with_the_concept"] == 2 and stats["stages"]["cleared"] == 1
    assert got["r1"].distractor_images == [file_name(9), file_name(2)]
    # the records feed the distractor term
    from negation_encoder.training.batching import examples_from_records
    from negation_encoder.training.terms.distractor import Distractor, DistractorConfig

    fed = examples_from_records(list(read_records(out)), [Distractor(DistractorConfig(), None)])
    assert sum("distractor" in ex.eligible for ex in fed) == 4


def test_counterfactuals_resume_shard_and_refuse_bad_input(coco, tmp_path, capsys):
    records = tmp_path / "in.jsonl"
    write_records(records, _cf_records())
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    flags = ["--instances", str(coco["instances"]), "--no-progress"]
    assert main(["data", "counterfactuals", str(records), str(full), *flags]) == 0
    assert main(["data", "counterfactuals", str(records), str(part), "--shard", "1/2", *flags]) == 0
    part.write_text(part.read_text() + '{"id": "r')
    assert main(["data", "counterfactuals", str(records), str(part), *flags]) == 0
    assert {r.id: r for r in read_records(part)} == {r.id: r for r in read_records(full)}
    capsys.readouterr()
    for argv, needle in (([str(records), str(tmp_path / "o.jsonl"), "--instances", str(tmp_path / "none.json")],
                          "none.json: file not found (expected COCO instances"),
                         ([str(records), str(tmp_path / "o.jsonl"), "--instances", str(coco["instances"]), "--k", "0"],
                          "--k must be >= 1"),
                         ([str(records), str(records), "--instances", str(coco["instances"])],
                          "the output cannot be the input file")):
        assert main(["data", "counterfactuals", *argv, "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and needle in err, (needle, err)
    assert not (tmp_path / "o.jsonl").exists()
