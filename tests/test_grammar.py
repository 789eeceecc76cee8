"""The world's negation grammar: held-out constructions never reach fine-tuning data, the held-out prompt
sets are built from them alone, and every construction says what it claims (foil, affirmative part)."""

import re

import pytest

from negation_encoder.data import read_records
from negation_encoder.data.referring import read_referring
from negation_encoder.splitting import split_negation
from negation_testbed.instruments.base_clip import world_tokenizer
from negation_testbed.world import grammar as G
from negation_testbed.world import language as L
from negation_testbed.world.datagen import generate_negation_data, make_referring_data, make_train_world
from negation_testbed.world.prompts import T2I_FORMS, VALIDATION_T2I_FORMS, world_prompt_sets

SLOTS = {"subject": "a red cup", "place": "kitchen", "neg": "fork"}
HELDOUT = G.HELDOUT_CONSTRUCTIONS + G.HELDOUT_CUE_CONSTRUCTIONS
UNTRAINED = HELDOUT + G.VALIDATION_CONSTRUCTIONS  # no fine-tuning text may use any of them


def _fine_tuning_texts(tmp_path) -> tuple[list[str], set[str]]:
    """Every text the demo's sources put in front of the trainer, from files generated on a small world, and
    the constructions the generator-prompt records name."""
    world = make_train_world(tmp_path / "images", n_scenes=120)
    data = generate_negation_data(world, tmp_path / "data", ("p1", "rand_p1", "p2", "presence", "t2i", "t2i-grammar",
                                                             "crops"),
                                  tokenizer=world_tokenizer(), progress=False, compositional=True)
    texts = [t for path, _ in data.values() for r in read_records(path)
             for t in (r.caption, r.negated_caption, *r.hard_negatives, *(r.extra_positives or []))]
    refs = read_referring(make_referring_data(tmp_path / "refs", n=200))
    texts += [t for r in refs for t in (r.text, r.affirmative) if t]
    t2i = {src: {r.provenance["construction"] for r in read_records(data[src][0])} for src in ("t2i", "t2i-grammar")}
    return texts, t2i


def test_no_fine_tuning_text_matches_a_heldout_construction(tmp_path):
    texts, t2i_constructions = _fine_tuning_texts(tmp_path)
    assert len(texts) > 1000
    leaks = [(t, G.heldout_matches(t) + G.validation_matches(t)) for t in texts
             if G.heldout_matches(t) or G.validation_matches(t)]
    assert not leaks, leaks[:5]
    # the grammar is what trains: every named training construction occurs in the t2i-grammar source's prompts,
    # the frames' constructions in the t2i source's
    assert t2i_constructions["t2i-grammar"] == set(G.construction_names(G.TRAIN_T2I_CONSTRUCTIONS))
    assert len(t2i_constructions["t2i-grammar"]) >= 9
    assert t2i_constructions["t2i"] == set(G.construction_names(G.T2I_FRAMES)) < t2i_constructions["t2i-grammar"]


def test_the_leak_check_catches_each_heldout_construction():
    """Each held-out construction's text matches its own pattern (so the no-leak test can fail), and no
    training construction, P1 rewrite frame or fine-tuning referring form matches any."""
    for c in HELDOUT:
        negated, _, _ = c.fill(**SLOTS)
        assert c.name in G.heldout_matches(negated), (c.name, negated)
        assert G.heldout_matches(negated.replace("fork", "bike").replace("kitchen", "street"))  # other slots too
    for form in G.HELDOUT_REFERRING_FORMS:
        assert G.heldout_matches(form.format(kind="car", value="green")), form
    for c in G.VALIDATION_CONSTRUCTIONS:  # the validation constructions: their own patterns, none held out
        negated, _, affirmative = c.fill(**SLOTS)
        assert G.validation_matches(negated) == [c.name] and not G.heldout_matches(negated), (c.name, negated)
        assert not G.validation_matches(affirmative)
    for c in HELDOUT:
        assert not G.validation_matches(c.fill(**SLOTS)[0]), c.name
    train = [t for c in G.TRAIN_T2I_CONSTRUCTIONS for t in c.fill(**SLOTS)]
    train += [f.format(caption="a red cup", concept="fork") for f in L.ABSENCE_FORMS + L.AFFIRM_FORMS]
    train += [f.format(kind="cup", value="red") for f in L.FINE_TUNING_REFERRING_FORMS]
    assert not [t for t in train if G.heldout_matches(t) or G.validation_matches(t)]
    # a deliberate leak is caught
    assert G.heldout_matches("the kitchen has a red cup but not any fork, in sight") == ["not_any"]
    assert G.validation_matches("a red cup, kitchen, with not a fork at all") == ["with_not_a"]


def test_heldout_prompt_sets_are_the_heldout_constructions_only():
    for name, constructions, matches in (("heldout", G.HELDOUT_CONSTRUCTIONS, G.heldout_matches),
                                         ("heldout-cues", G.HELDOUT_CUE_CONSTRUCTIONS, G.heldout_matches),
                                         ("validation-constructions", G.VALIDATION_CONSTRUCTIONS, G.validation_matches)):
        negated, control = world_prompt_sets(2, prompts=name)
        assert len(negated) == len(control) == 32
        assert (negated, control) == world_prompt_sets(2, seed=9, prompts=name)  # its own seed
        assert {p["construction"] for p in negated} == {c.name for c in constructions}  # every one, evenly
        for p, c in zip(negated, control, strict=True):
            assert p["construction"] in matches(p["prompt"])
            assert not matches(c["prompt"]) and c["id"] == p["id"] + "_control"
            assert p["negated_concepts"][0] in p["prompt"] and p["negated_concepts"][0] not in c["prompt"]
            assert p["subject"] in p["prompt"] and p["subject"] in c["prompt"]  # the control keeps the subject
    cues = {p["cue"] for p in world_prompt_sets(2, prompts="heldout-cues")[0]}
    assert cues <= set(L.HELDOUT_CUES) and not cues & set(L.TRAIN_CUES)
    trained = {p["cue"] for p in world_prompt_sets(2, prompts="heldout")[0]}
    assert trained <= {"not", "no", "there is no"}


def test_heldout_and_training_prompts_never_contain_evaluated_or_validation_prompts():
    scored = [f for forms in (*T2I_FORMS, *VALIDATION_T2I_FORMS) for f in forms if "{" in f]
    scored = [f.format(place=p, colour=c, kind=k, neg=n) for f in scored for p in ("kitchen", "street")
              for c in ("red", "blue") for k in ("cup", "car") for n in ("fork", "bike")]
    for c in G.TRAIN_T2I_CONSTRUCTIONS + UNTRAINED:
        for subject in ("a red cup", "a blue car", "a red cup and a blue plate"):
            negated, foil, _ = c.fill(subject=subject, place="kitchen", neg="fork")
            for text in (negated, foil):
                assert not any(s in text for s in scored), (c.name, text)
    untrained = {t for c in UNTRAINED for t in c.fill(**SLOTS)[:1]}
    assert not untrained & {t for c in G.TRAIN_T2I_CONSTRUCTIONS for t in c.fill(**SLOTS)}
    validation = [p["prompt"] for p in world_prompt_sets(2, prompts="validation-constructions")[0]]
    heldout = [p["prompt"] for name in ("heldout", "heldout-cues") for p in world_prompt_sets(2, prompts=name)[0]]
    assert not set(validation) & set(heldout)


@pytest.mark.parametrize("construction", G.TRAIN_T2I_CONSTRUCTIONS, ids=lambda c: c.name)
def test_training_constructions_are_minimal_pairs_the_splitter_reads(construction):
    """Foil = the negated text with the cue removed and the object affirmed (the same words otherwise); the
    affirmative part names the subject and not the negated object; the splitter finds the negated object
    (the records' truth check reads it); every word is in the closed vocabulary."""
    negated, foil, affirmative = construction.fill(**SLOTS)
    assert "fork" in foil and "fork" not in affirmative and "red cup" in affirmative
    assert split_negation(negated).negated and "fork" in split_negation(negated).negated[0]
    assert not split_negation(foil).has_negation and not split_negation(affirmative).has_negation
    for text in (negated, foil, affirmative):
        words = set(re.findall(r"[a-z]+", text)) - {"t"}
        assert words <= set(L.WORLD_WORDS), (text, words - set(L.WORLD_WORDS))


@pytest.mark.parametrize("construction", G.VALIDATION_CONSTRUCTIONS, ids=lambda c: c.name)
def test_validation_constructions_are_minimal_pairs_the_splitter_reads(construction):
    """The validation constructions say what they claim too, so their negative-prompt and omit arms are sound."""
    negated, foil, affirmative = construction.fill(**SLOTS)
    assert "fork" in foil and "fork" not in affirmative and "red cup" in affirmative
    assert list(split_negation(negated).negated) == ["fork"] and not split_negation(affirmative).has_negation


def test_heldout_texts_are_in_the_closed_vocabulary():
    texts = [t for c in UNTRAINED for t in c.fill(**SLOTS)]
    texts += [f.format(kind="cup", value="red") for f in G.HELDOUT_REFERRING_FORMS]
    for text in texts:
        words = set(re.findall(r"[a-z]+", text)) - {"t"}
        assert words <= set(L.WORLD_WORDS), (text, words - set(L.WORLD_WORDS))


def test_the_grammar_recipe_is_the_default_with_the_grammar_source():
    """`--recipe grammar` differs from the default only in its generator-prompt source, so the comparison in
    docs/testbed.md measures the grammar and nothing else."""
    from negation_testbed.recipes import get_recipe
    from negation_testbed.world.datagen import T2I_SOURCES

    default, grammar = get_recipe("default"), get_recipe("grammar")
    assert default.config == grammar.config and default.seg == grammar.seg
    assert [s if s != "t2i" else "t2i-grammar" for s in default.sources] == list(grammar.sources)
    assert set(T2I_SOURCES) == {"t2i", "t2i-grammar"} and T2I_SOURCES["t2i-grammar"] == G.TRAIN_T2I_CONSTRUCTIONS
