import json
import os
import subprocess
import sys

import pytest

from negation_encoder.data import NegationRecord, RecordError, RecordWriter, read_records, write_records


def _rec(i: int, **over) -> dict:
    d = {
        "id": f"r{i}",
        "image": f"img{i}.png",
        "caption": "a dog on a street",
        "negated_caption": "a dog on a street with no cars",
        "negation_type": "absence",
        "negated_concept": "car",
        "source": "p1",
        "hard_negatives": ["a dog on a street with cars"],
        "provenance": {"llm": "oracle"},
    }
    d.update(over)
    return d


def _write_lines(path, objs):
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))


def test_round_trip_keeps_unknown_keys(tmp_path):
    p = tmp_path / "r.jsonl"
    _write_lines(p, [_rec(0, score=0.9), _rec(1)])
    recs = read_records(p)
    assert [r.id for r in recs] == ["r0", "r1"]
    assert recs[0].extra == {"score": 0.9}
    out = tmp_path / "out.jsonl"
    write_records(out, recs)
    assert [json.loads(line) for line in out.read_text().splitlines()][0]["score"] == 0.9


@pytest.mark.parametrize(
    "bad,expect",
    [
        ("{not json", "invalid JSON"),
        (json.dumps({k: v for k, v in _rec(1).items() if k != "negated_caption"}), "missing required field(s) 'negated_caption'"),
        (json.dumps(_rec(1, hard_negatives="oops")), "field 'hard_negatives' must be list"),
        (json.dumps(_rec(1, caption=3)), "field 'caption' must be str"),
        (json.dumps(_rec(1, negation_type="maybe")), "must be one of absence|presence"),
        (json.dumps(_rec(0)), "duplicate id 'r0' (first seen on line 1)"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_records_name_file_and_line(tmp_path, bad, expect):
    p = tmp_path / "bad.jsonl"
    _write_lines(p, [_rec(0), "", bad])
    with pytest.raises(RecordError) as err:
        read_records(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}:3: "), msg
    assert expect in msg
    assert "\n" not in msg


def test_dataclass_rejects_bad_type():
    with pytest.raises(ValueError, match="negation_type"):
        NegationRecord(**{**_rec(0), "negation_type": "nope"})


def test_torn_last_line_is_dropped_on_resume_and_not_parsed(tmp_path):
    p = tmp_path / "gen.jsonl"
    with RecordWriter(p) as w:
        for i in range(3):
            assert w.write(NegationRecord.from_dict(_rec(i)))
    whole = p.read_bytes()
    torn_line = json.dumps(_rec(3)).encode()[:25]
    p.write_bytes(whole + torn_line)
    with pytest.raises(RecordError, match="torn write"):
        read_records(p)
    with RecordWriter(p) as w:
        assert w.dropped_torn_bytes == len(torn_line)
        assert w.resumed_count == 3
        assert not w.write(NegationRecord.from_dict(_rec(1)))  # already there: skipped
        assert w.write(NegationRecord.from_dict(_rec(3)))
    assert [r.id for r in read_records(p)] == ["r0", "r1", "r2", "r3"]


_KILLED_WRITER = r"""
import sys, os, json
from negation_encoder.data import NegationRecord, RecordWriter
path, n = sys.argv[1], int(sys.argv[2])
base = json.loads(sys.argv[3])
with RecordWriter(path) as w:
    for i in range(n):
        rec = NegationRecord.from_dict({**base, "id": f"r{i}"})
        if i == 7:
            # die in the middle of a line, as a kill -9 during write() would leave it
            w._fh.write(rec.to_json()[:30]); w._fh.flush(); os._exit(9)
        w.write(rec)
"""


def test_killed_writer_resumes_without_duplicates_or_gaps(tmp_path):
    p = tmp_path / "killed.jsonl"
    cmd = [sys.executable, "-c", _KILLED_WRITER, str(p), "12", json.dumps(_rec(0))]
    res = subprocess.run(cmd, env={**os.environ}, capture_output=True)
    assert res.returncode == 9
    assert not p.read_bytes().endswith(b"\n")
    with RecordWriter(p) as w:
        assert w.resumed_count == 7
        written = [w.write(NegationRecord.from_dict({**_rec(0), "id": f"r{i}"})) for i in range(12)]
    assert written == [False] * 7 + [True] * 5
    assert [r.id for r in read_records(p)] == [f"r{i}" for i in range(12)]


def test_distractor_images_are_validated(tmp_path):
    p = tmp_path / "r.jsonl"
    _write_lines(p, [_rec(0, distractor_images=["img7.png", "img8.png"])])
    rec = read_records(p)[0]
    assert rec.distractor_images == ["img7.png", "img8.png"] and rec.extra == {}
    for bad, msg in (("img7.png", "must be list, got str"), (["img7.png", 3], r"item\(s\) \[1\] are not"),
                     (["img7.png", " "], r"non-empty strings; item\(s\) \[1\] are not"),
                     (["img7.png", "img1.png"], "lists the record's own image 'img1.png'")):
        _write_lines(p, [_rec(0), _rec(1, distractor_images=bad)])
        with pytest.raises(RecordError, match=rf"r\.jsonl:2: field 'distractor_images' .*{msg}"):
            read_records(p)


def test_extra_positives_are_validated(tmp_path):
    p = tmp_path / "r.jsonl"
    _write_lines(p, [_rec(0, extra_positives=["a dog on a street with a bike"])])
    assert read_records(p)[0].extra_positives == ["a dog on a street with a bike"]
    for bad, msg in (({"a": 1}, "must be list, got dict"), (["fine", 3], r"item\(s\) \[1\] are not"),
                     (["", "fine"], r"non-empty strings; item\(s\) \[0\] are not")):
        _write_lines(p, [_rec(0), _rec(1, extra_positives=bad)])
        with pytest.raises(RecordError, match=rf"r\.jsonl:2: field 'extra_positives' .*{msg}"):
            read_records(p)


def test_optional_list_fields_round_trip_byte_for_byte(tmp_path):
    """Files as the pipelines write them (the optional keys after provenance, extra_positives first, only
    when set; unknown keys last) come back byte for byte; a record without them gains no key."""
    lines = [
        json.dumps(_rec(0)),
        json.dumps(_rec(1, extra_positives=["a dog on a street with a bike"])),
        json.dumps(_rec(2, distractor_images=["img7.png"])),
        json.dumps(_rec(3, extra_positives=["a dog on a street with a bike"], distractor_images=["img7.png", "img8.png"],
                        score=0.5)),
        json.dumps(_rec(4, distractor_images=[])),
    ]
    p = tmp_path / "in.jsonl"
    p.write_text("".join(line + "\n" for line in lines))
    recs = read_records(p)
    assert [(r.extra_positives, r.distractor_images) for r in recs] == [
        (None, None), (["a dog on a street with a bike"], None), (None, ["img7.png"]),
        (["a dog on a street with a bike"], ["img7.png", "img8.png"]), (None, [])]
    assert recs[3].extra == {"score": 0.5}
    out = tmp_path / "out.jsonl"
    write_records(out, recs)
    assert out.read_bytes() == p.read_bytes()
    assert "extra_positives" not in recs[0].to_dict() and "distractor_images" not in recs[0].to_json()


def test_optional_fields_given_with_the_unknown_keys_become_fields():
    rec = NegationRecord(**{**_rec(0), "extra": {"distractor_images": ["img7.png"], "score": 1}})
    assert rec.distractor_images == ["img7.png"] and rec.extra == {"score": 1}
    with pytest.raises(ValueError, match="'distractor_images' given twice"):
        NegationRecord(**{**_rec(0), "distractor_images": ["img8.png"], "extra": {"distractor_images": ["img7.png"]}})
    with pytest.raises(ValueError, match="own image 'img0.png'"):
        NegationRecord(**{**_rec(0), "distractor_images": ["img0.png"]})


def test_batched_token_counts_match_one_call_per_text():
    """Training checks lengths with one batched tokenizer call; it must count as one call per text does,
    for repeated, short and over-long texts alike (the over-long one is what the check exists for)."""
    from negation_encoder.data.validation import token_count, token_counts
    from negation_encoder.testing.tiny import build_clip_tokenizer

    tok = build_clip_tokenizer()
    texts = ["a dog", "a dog with no cat", "a dog", "a dog " * 40 + "with no cat", "no"]
    counts = token_counts(texts, tok)
    assert list(counts) == list(dict.fromkeys(texts))
    assert counts == {t: token_count(t, tok) for t in texts}
    assert counts["a dog " * 40 + "with no cat"] > 77
    assert token_counts(texts) == {t: token_count(t) for t in texts} and token_counts([], tok) == {}
