"""`negenc data omit-pairs`: what omit_states trains on, by the term's own rule."""

from __future__ import annotations

import json

from negation_encoder.cli import main
from negation_encoder.data import NegationRecord, write_records


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
