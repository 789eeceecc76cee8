"""`negenc generate t2i`: generator-style prompts with negations from COCO captions and instances, in their real
layouts (tests/_coco_world.py), templated and LLM-rewritten; resumable, sharded, one-line errors."""

from __future__ import annotations

import json
import re

import pytest

from negation_encoder.cli import main
from negation_encoder.data import read_records
from negation_encoder.data.categories import names_category
from negation_encoder.data.t2i import T2I_FORMS, Cooccurrence, subject_of
from negation_encoder.data.validation import token_count
from negation_encoder.splitting import has_negation_cue, split_negation

from ._chat_server import chat_server
from ._coco_world import SCENES, file_name, write_coco_world


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return write_coco_world(tmp_path_factory.mktemp("coco"))


def _t2i(coco, out, *extra):
    return main(["generate", "t2i", "--coco-captions", str(coco["captions"]), "--instances", str(coco["instances"]),
                 "--images", str(coco["images"]), "--out", str(out), "--no-progress", *extra])


@pytest.mark.parametrize("form", range(len(T2I_FORMS)))
def test_every_form_reads_as_the_subject_minus_the_absent_object(form):
    """omit_states' target for a t2i prompt is the base's reading of its affirmative part: the splitter must
    give exactly the frame's subject, whatever the subject and the object."""
    neg_form, foil_form, aff_form = T2I_FORMS[form]
    for subject in ("a man riding a bike down the street", "two cats sleeping on a bed", "a plate of food on a table"):
        for neg, a_neg in (("dog", "a dog"), ("dining table", "a dining table"), ("umbrella", "an umbrella")):
            s = split_negation(neg_form.format(subject=subject, neg=neg, a_neg=a_neg))
            assert s.affirmative == aff_form.format(subject=subject) and s.negated == (neg,), (form, s)
            foil = foil_form.format(subject=subject, neg=neg, a_neg=a_neg)
            assert not has_negation_cue(foil) and neg in foil


def test_cooccurrence_is_the_mean_conditional_rate_by_hand():
    co = Cooccurrence({"a": ["cup", "table"], "b": ["cup", "table", "fork"], "c": ["cup", "fork"], "d": ["dog"],
                       "e": ["table", "chair"]})
    # P(fork | cup) = 2/3, P(fork | table) = 1/3 -> 1/2; P(chair | cup) = 0, P(chair | table) = 1/3 -> 1/6
    assert co.absent_candidates(["cup", "table"]) == [("fork", pytest.approx(0.5)), ("chair", pytest.approx(1 / 6))]
    assert co.absent_candidates(["cup", "table"], exclude=["fork"]) == [("chair", pytest.approx(1 / 6))]
    assert co.absent_candidates(["dog"]) == []  # nothing co-occurs with a dog: no plausible absent object
    assert subject_of("A man riding a bike.\n") == "a man riding a bike"
    assert subject_of("TV on a stand.") == "TV on a stand"


def test_t2i_records_from_real_formats(coco, tmp_path):
    out = tmp_path / "t2i.jsonl"
    assert _t2i(coco, out) == 0
    recs = read_records(out)
    by_image = {file_name(i): {o[0] for o in objs} for i, (objs, _) in SCENES.items()}
    captions = {c for _, caps in SCENES.values() for c in caps}
    assert len(recs) >= 12
    for r in recs:
        assert (r.source, r.negation_type) == ("t2i", "absence")
        assert r.negated_concept not in by_image[r.image], f"{r.id}: negates an object the image has"
        original = next(c for c in captions if subject_of(c) in r.caption)
        assert not names_category(original, r.negated_concept), f"{r.id}: negates what its caption names"
        split = split_negation(r.negated_caption)
        assert split.affirmative == r.caption and split.negated == (r.negated_concept,)
        affirmed = r.hard_negatives[0]
        assert r.negated_concept in affirmed and not has_negation_cue(affirmed)
        for text in r.hard_negatives[1:]:  # the frame negating an object the image has: false
            assert has_negation_cue(text) and text != r.negated_caption
        for text in r.extra_positives or ():  # the frame affirming an annotated object: true
            assert not has_negation_cue(text)
        assert all(token_count(t) <= 77 for t in (r.caption, r.negated_caption, *r.hard_negatives))
    # a man riding a bike: "no bike" is the caption's own word for the present foil
    rec = next(r for r in recs if r.image == file_name(1) and "riding" in r.caption)
    assert any(re.search(r"\bno bike\b|\bwithout a bike\b", h) for h in rec.hard_negatives), rec.hard_negatives
    stats = json.loads((tmp_path / "t2i.jsonl.stats.json").read_text())
    assert stats["rejects"] == {"select:caption_negates": 1, "select:no_annotated_objects": 1}
    # the same seed: the same bytes; another seed: other draws
    again, other = tmp_path / "again.jsonl", tmp_path / "other.jsonl"
    assert _t2i(coco, again) == 0 and _t2i(coco, other, "--seed", "1") == 0
    assert again.read_bytes() == out.read_bytes()
    assert other.read_bytes() != out.read_bytes()


def test_resume_after_a_kill_and_shards(coco, tmp_path):
    full = tmp_path / "full.jsonl"
    assert _t2i(coco, full) == 0
    part = tmp_path / "part.jsonl"
    assert _t2i(coco, part, "--limit", "5", "--batch-size", "2") == 0
    lines = part.read_text().splitlines(keepends=True)
    part.write_text("".join(lines) + lines[-1][:30])  # a torn line, as a kill mid-write leaves
    assert _t2i(coco, part, "--batch-size", "2") == 0
    ids = [r.id for r in read_records(part)]
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(r.id for r in read_records(full))
    shards = [tmp_path / f"s{i}.jsonl" for i in range(2)]
    for i, s in enumerate(shards):
        assert _t2i(coco, s, "--shard", f"{i}/2") == 0
    a, b = ({r.id for r in read_records(s)} for s in shards)
    assert a and b and not (a & b) and a | b == {r.id for r in read_records(full)}
    merged = tmp_path / "merged.jsonl"
    assert main(["data", "merge", str(merged), *map(str, shards)]) == 0
    assert {r.id: r for r in read_records(merged)} == {r.id: r for r in read_records(full)}


def test_bad_inputs_are_one_line_exit_2_before_anything_is_written(coco, tmp_path, capsys):
    val = tmp_path / "instances_val2014.json"
    val.write_text(json.dumps({"images": [{"id": 99, "file_name": "COCO_val2014_000000000099.jpg"}],
                               "categories": [{"id": 1, "name": "person"}], "annotations": []}))
    broken = tmp_path / "captions.json"
    broken.write_text('{"images": [],\n "annotations": [}')
    out = tmp_path / "gen" / "t2i.jsonl"
    good = {"--coco-captions": str(coco["captions"]), "--instances": str(coco["instances"]),
            "--images": str(coco["images"]), "--out": str(out)}
    cases = [  # flags changed (None: left out), the line expected
        ({"--instances": None}, "t2i needs --instances"),
        ({"--instances": str(val)}, f"{val}: lists none of the images of the 18 captions of"),
        ({"--coco-captions": str(broken)}, f"{broken}: invalid JSON at line 2"),
        ({"--llm": "gpt-4"}, "--llm must be transformers:MODEL or openai:MODEL@URL"),
        ({"--mllm": "openai:m@http://127.0.0.1:9"}, "t2i takes no --mllm"),
        ({"--shard": "2/2"}, "--shard 2/2: need 0 <= i < n"),
        ({"--candidates": "0"}, "candidates must be a number >= 1, got 0"),
    ]
    for change, needle in cases:
        flags = {**good, **change}
        args = ["generate", "t2i", "--no-progress"] + [x for k, v in flags.items() if v is not None for x in (k, v)]
        assert main(args) == 2, needle
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and needle in err, (needle, err)
        assert not out.parent.exists(), f"{needle}: wrote before refusing"


def _rewriter(content: str) -> str:
    """A chat model for the t2i prompt files: short prompts; nothing (a reject) for negating prompts of tables."""
    shows = re.search(r'shows: "(.*?)"', content).group(1)
    negate = re.search(r"there is no (.+?) in the image", content)
    if negate:
        return "" if "table" in shows else f"Prompt: {shows}, not a single {negate.group(1)} anywhere"
    return shows + " next to " + re.search(r"and also a (.+?)\. Do not", content).group(1)


def test_an_llm_rewrites_the_prompts_and_every_rewrite_is_checked(coco, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-written")
    out = tmp_path / "t2i_llm.jsonl"
    with chat_server(_rewriter) as url:
        assert _t2i(coco, out, "--llm", f"openai:tiny@{url}") == 0
    recs = read_records(out)
    assert recs and all(r.provenance["llm"] == "openai:tiny" for r in recs)
    for r in recs:
        assert r.negated_caption.endswith(f"not a single {r.negated_concept} anywhere")  # "Prompt:" prefix dropped
        assert r.hard_negatives[0].endswith(f"next to {r.negated_concept}")
        assert "table" not in r.caption  # a rejected negated prompt drops its record, never falls back
    stats = json.loads((tmp_path / "t2i_llm.jsonl.stats.json").read_text())
    assert stats["stages"]["rewrite_ok"] > 0 and stats["rejects"].get("rewrite:empty", 0) >= 1
    assert "sk-never-written" not in out.read_text()
