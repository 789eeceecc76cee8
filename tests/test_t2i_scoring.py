"""The Neg Score rule, the bootstrap and TIFA's aggregation on hand-made judge answers."""

import pytest

from eval_t2i.negscore import summarize
from eval_t2i.scoring import image_score, is_yes, tifa_aggregate


def test_yes_is_strictly_more_than_no():
    assert is_yes(0.51) and not is_yes(0.5) and not is_yes(0.2)


@pytest.mark.parametrize("subject, negated, expected", [
    (0.9, [0.1], 1), (0.9, [0.6], 0), (0.4, [0.1], 0), (0.5, [0.1], 0), (0.9, [0.1, 0.5], 1),
    (0.9, [0.1, 0.51], 0), (0.7, [], 1),
])
def test_image_scores_one_only_with_subject_and_every_negated_concept_absent(subject, negated, expected):
    assert image_score(subject, negated) == expected


def test_summary_per_type_and_cue_from_probabilities():
    def rec(arm, key, seed, probs, kind, cue):
        return {"arm": arm, "key": key, "seed": seed, "probabilities": probs, "negation_type": kind, "cue": cue}
    records = [rec("base", "p1", 0, [0.9, 0.8], "object", "no"), rec("base", "p1", 1, [0.9, 0.2], "object", "no"),
               rec("base", "p2", 0, [0.3, 0.1], "action", "not"), rec("base", "p2", 1, [0.8, 0.1], "action", "not"),
               rec("swapped", "p1", 0, [0.9, 0.1], "object", "no"), rec("swapped", "p1", 1, [0.9, 0.2], "object", "no"),
               rec("swapped", "p2", 0, [0.6, 0.4], "action", "not"), rec("swapped", "p2", 1, [0.8, 0.9], "action", "not")]
    s = summarize(records, ["base", "swapped"], resamples=300)
    assert s["arms"]["base"]["neg_score"] == 0.5 and s["arms"]["swapped"]["neg_score"] == 0.75
    assert s["arms"]["base"]["by_negation_type"] == {"action": {"mean": 0.5, "n_images": 2},
                                                     "object": {"mean": 0.5, "n_images": 2}}
    assert s["arms"]["swapped"]["by_cue"]["no"]["mean"] == 1.0
    assert s["paired"]["swapped - base"]["mean"] == 0.25 and s["paired"]["swapped - base"]["n_pairs"] == 4
    assert s["bootstrap_unit"] == "prompt" and s["bootstrap_resamples"] == 300
    # by hand: base subject yes in 3 of 4 images (0.3 is no), negated yes in 1 (0.8); swapped 4 of 4 and 1 (0.9)
    assert s["arms"]["base"]["subject_rate"] == 0.75 and s["arms"]["base"]["negated_rate"] == 0.25
    assert s["arms"]["swapped"]["subject_rate"] == 1.0 and s["arms"]["swapped"]["negated_rate"] == 0.25


def test_report_states_the_resample_count_of_new_and_older_summaries():
    from eval_t2i.report import markdown_table

    arms = {"base": {"neg_score": 0.5, "ci95": [0.25, 0.75], "n_images": 4, "n_prompts": 2, "by_negation_type": {},
                     "by_cue": {}}}
    for key in ("bootstrap_resamples", "n_boot"):  # n_boot: the count's name in summaries already on disk
        text = markdown_table({"bootstrap_unit": "prompt", key: 321, "bootstrap_seed": 7, "arms": arms})
        assert "over prompts (321 resamples, seed 7)" in text, key


def test_rates_of_an_affirmative_control_leave_the_negated_rate_undefined():
    recs = [{"arm": "base", "key": "c", "seed": i, "probabilities": [p], "negation_type": "none", "cue": "none"}
            for i, p in enumerate((0.9, 0.2, 0.6))]
    a = summarize(recs, ["base"], resamples=50)["arms"]["base"]
    assert a["subject_rate"] == pytest.approx(2 / 3) and a["negated_rate"] is None and a["neg_score"] == pytest.approx(2 / 3)


def test_omit_arm_sends_the_affirmative_part_alone():
    from eval_t2i.generation import ARMS, arm_prompt
    from eval_t2i.prompts import PromptItem

    item = PromptItem(id="x", prompt="a kitchen with a red cup and no fork", subject="cup", negated_concepts=("fork",),
                      negation_type="object", cue="no", questions=("Is there a cup?", "Is there a fork?"))
    assert arm_prompt(item, ARMS["omit"]) == ("a kitchen with a red cup", None)
    assert arm_prompt(item, ARMS["base+negprompt"]) == ("a kitchen with a red cup", "fork")
    assert arm_prompt(item, ARMS["base"]) == (item.prompt, None)
    assert not ARMS["omit"].swapped
    # stacked: the negation encoder reads the prompt as written; the negated object is also the negative prompt
    assert arm_prompt(item, ARMS["swapped+negprompt"]) == (item.prompt, "fork")
    given = PromptItem(id="y", prompt="a desk with no lamp and no book", subject="desk", negated_concepts=("lamp", "book"),
                       negation_type="object", cue="no", questions=("Is there a desk?",), affirmative="a desk")
    assert arm_prompt(given, ARMS["swapped+negprompt"]) == (given.prompt, "lamp, book")
    assert arm_prompt(given, ARMS["base+negprompt"]) == ("a desk", "lamp, book")


def test_tifa_aggregate_per_caption_then_over_captions():
    rows = [{"id": "a", "element_type": "object", "correct": 1}, {"id": "a", "element_type": "color", "correct": 0},
            {"id": "a", "element_type": "object", "correct": 1}, {"id": "b", "element_type": "object", "correct": 0}]
    out = tifa_aggregate(rows)
    assert out["tifa_average"] == pytest.approx((2 / 3 + 0) / 2)  # not 2/4: captions weigh equally
    assert out["accuracy_by_type"] == {"color": 0.0, "object": pytest.approx(2 / 3)}
    assert out["n_captions"] == 2 and out["n_questions"] == 4
