"""Prompt-set loaders on fixtures written in each real format, bad entries, and the shipped sets."""

import csv
import json

import pytest

from eval_t2i import promptgen
from eval_t2i.prompts import builtin_path, load_prompts, negated_from_question, splitter_agreement
from eval_t2i.tifa import load_tifa_questions
from negation_encoder.cli import main
from negation_encoder.errors import InputError

PARK = [{"Prompt": "a man not wearing a hat", "Question1": "Is this a man?", "Question2": "Is the man wearing a hat?"},
        {"Prompt": "a lake with no boats", "Question1": "Is this a lake?", "Question2": "Are there boats on the lake?"},
        {"Prompt": "a dog without a collar", "Question1": "Is this a dog?", "Question2": "Does the dog have a collar?"}]
MULTI = [{"id": 7, "full_prompt": "A photo of a desk without a lamp, a mug, or a phone.",
          "affirmative_prompt": "A desk.", "negative_prompts": ["lamp", "mug", "phone"],
          "Question1": "Is this a desk?", "Question2": ["Does the image contain a lamp?", "Does the image contain a mug?",
                                                        "Does the image contain a phone?"]}]
OURS = [{"id": "x1", "prompt": "a garage with no bicycles", "subject": "garage", "negated_concepts": ["bicycles"],
         "negation_type": "object", "cue": "with no",
         "questions": ["Is there a garage in the image?", "Are there bicycles in the image?"]}]


def _write(tmp_path, name, data):
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_park_format_subject_and_negated_from_questions(tmp_path):
    s = load_prompts(_write(tmp_path, "park.json", PARK))
    assert s.format == "park107" and len(s.items) == 3
    man, lake, dog = s.items
    assert (man.subject, man.negated_concepts, man.negation_type, man.cue) == ("man", ("wearing a hat",), "action", "not")
    assert man.questions == ("Is this a man?", "Is the man wearing a hat?")
    assert (lake.subject, lake.negated_concepts) == ("lake", ("boats",))
    assert (dog.negated_concepts, dog.cue, dog.affirmative) == (("collar",), "without", None)


def test_multi_format_keeps_the_given_split_and_agreement(tmp_path):
    s = load_prompts(_write(tmp_path, "multi.json", MULTI))
    item = s.items[0]
    assert (s.format, item.id, item.subject, item.negated_concepts) == ("multi", "multi_7", "desk", ("lamp", "mug", "phone"))
    assert item.affirmative == "A desk." and len(item.questions) == 4
    agree = splitter_agreement(s.items)
    assert agree == {"n": 1, "negated_exact": 1.0, "negated_recall": 1.0, "affirmative_exact": 1.0}


def test_split_csv_and_our_format(tmp_path):
    p = tmp_path / "splitted_prompts.csv"
    with p.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerows([["Prompts", "Affirmative", "Negated"], ["a dog not running", "a dog", "running"],
                      ["a room with no window", "a room", "window"]])
    s = load_prompts(p)
    assert [i.questions for i in s.items] == [("Is there a dog?", "Is the dog running?"),
                                              ("Is there a room?", "Is there a window?")]
    ours = load_prompts(_write(tmp_path, "ours.json", {"name": "mine", "prompts": OURS}))
    assert (ours.name, ours.items[0].cue, ours.items[0].negated_questions) == ("mine", "with no",
                                                                               ("Are there bicycles in the image?",))


@pytest.mark.parametrize("data, fragment", [
    (PARK[:1] + [{"Prompt": "a cat", "Question1": "What is this?", "Question2": "Is the cat red?"}],
     "entry 1: 'Question1' must ask for the subject"),
    (PARK[:1] + [{"Prompt": "a cat", "Question1": "Is this a cat?"}], "entry 1: 'Question2' must be a non-empty string, got missing"),
    ([dict(MULTI[0], negative_prompts=["lamp"])], "entry 0 (id 7): 'Question2' has 3 questions but 'negative_prompts' has 1"),
    (OURS + [dict(OURS[0], id="x2", negation_type="color")], "entry 1 (id 'x2'): 'negation_type' must be one of"),
    (OURS + [dict(OURS[0])], "entry 1: duplicate id 'x1' (first at entry 0)"),
    (OURS + [dict(OURS[0], id="x3", questions=["Is there a garage?"])], "entry 1 (id 'x3'): 'questions' has 1 entries; expected 2"),
])
def test_bad_entry_is_one_line_naming_file_and_entry(tmp_path, data, fragment):
    p = _write(tmp_path, "bad.json", data)
    with pytest.raises(InputError) as e:
        load_prompts(p)
    assert fragment in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_validate_cli_counts_and_bad_file_exit_2(tmp_path, capsys):
    assert main(["t2i", "validate", str(_write(tmp_path, "park.json", PARK))]) == 0
    out = capsys.readouterr().out
    assert "3 valid prompts (format park107)" in out and "action 1, object 2" in out
    bad = _write(tmp_path, "bad.json", [{"Prompt": "x"}])
    assert main(["t2i", "validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{bad}: entry 0: 'Question1'" in err[0]


def test_shipped_sets_equal_the_generator_and_cover_types_and_cues():
    negated, control = promptgen.build_sets()
    assert json.loads(builtin_path("negation_v1").read_text()) == negated
    assert json.loads(builtin_path("negation_v1_control").read_text()) == control
    s = load_prompts("negation_v1")
    assert len(s.items) >= 150
    assert set(s.counts_by_type()) == {"object", "attribute", "action", "scene"}
    assert {"no", "with no", "without", "not", "free of", "lacking", "doesn't have"} <= set(s.counts_by_cue())
    assert len({i.prompt for i in s.items}) == len(s.items)
    c = load_prompts("negation_v1_control")
    assert [i.id for i in c.items] == [f"ctrl_{i.id}" for i in s.items]
    assert all(not i.negated_concepts and "not" not in i.prompt.split() for i in c.items)


def test_question_forms():
    assert negated_from_question("Is the man wearing a hat?", "man") == "wearing a hat"
    assert negated_from_question("Are there people on the street?", "street") == "people"
    assert negated_from_question("Does the image contain an ID badge?", "doctor") == "ID badge"


def test_tifa_loader_and_bad_answer(tmp_path):
    qa = [{"id": "c1", "caption": "a red bus", "question": "is this a bus?", "choices": ["yes", "no"], "answer": "yes",
           "element_type": "object", "element": "bus"}]
    assert load_tifa_questions(_write(tmp_path, "qa.json", qa))[0].choices == ("yes", "no")
    p = _write(tmp_path, "qa_bad.json", qa + [dict(qa[0], answer="maybe")])
    with pytest.raises(InputError, match=r"entry 1 \(id 'c1'\): 'answer' 'maybe' is not one of the choices"):
        load_tifa_questions(p)
