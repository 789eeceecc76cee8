"""The negation splitter: cue words and their scope, lists, attributes, postfix cues, the LLM route."""

import json

import pytest

from integrations.routes import negation_prompts
from negation_encoder.splitting import (
    EMPTY_AFFIRMATIVE,
    LLMSplitter,
    NegatedConcept,
    NegationSplit,
    RuleSplitter,
    parse_split_answer,
    split_negation,
)


@pytest.mark.parametrize("text,affirmative,negated", [
    ("a street with no cars", "a street", ["cars"]),
    ("A bowl of fruit without bananas", "A bowl of fruit", ["bananas"]),
    ("a red cup, with no fork here", "a red cup", ["fork"]),
    ("no fork, a red cup", "a red cup", ["fork"]),
    ("There is no dog in the picture.", EMPTY_AFFIRMATIVE, ["dog"]),
    ("a kitchen that does not have a fork", "a kitchen", ["fork"]),
    ("a dog on a sofa, but not a cat", "a dog on a sofa", ["cat"]),
    ("A photo of a man without a hat, glasses, or tie.", "A photo of a man.", ["hat", "glasses", "tie"]),
    ("a desk with no lamp or book", "a desk", ["lamp", "book"]),
    ("neither a cup nor a fork", EMPTY_AFFIRMATIVE, ["cup", "fork"]),
    ("a street with no cars and no buses", "a street", ["cars", "buses"]),
    # a "no parking" sign is a sign (lexicalised negation), not the absence of a parking sign
    ("no parking sign and a car", "no parking sign and a car", []),
    ("a man not wearing a hat", "a man", ["wearing a hat"]),
    ("a road not crowded with cars", "a road", ["crowded with cars"]),
    ("a not white cat", "a cat", ["white cat"]),
    ("the ball that is not green", "the ball", ["green ball"]),
    ("a bus, but not the yellow one", "a bus", ["yellow bus"]),
    # the room is affirmed: "from PLACE" names the place when the negation opens the sentence
    ("A chair is missing from this room.", "this room.", ["chair"]),
    ("a table, with the vase missing", "a table", ["vase"]),
    ("a garden free of any weeds", "a garden", ["weeds"]),
    ("a beach lacking umbrellas", "a beach", ["umbrellas"]),
])
def test_rule_splitter_cases(text, affirmative, negated):
    s = split_negation(text)
    assert (s.affirmative, list(s.negated)) == (affirmative, negated), s


def test_plain_caption_is_untouched():
    s = split_negation("a red cup and a fork on the top left")
    assert not s.has_negation and s.affirmative == "a red cup and a fork on the top left" and s.negated == ()
    assert negation_prompts(["a photo of a dog"]) == (["a photo of a dog"], [None])


def test_negative_prompts_and_types():
    assert negation_prompts(["a desk with no lamp or book"]) == (["a desk"], ["lamp, book"])
    assert negation_prompts(["a desk with no lamp"], ["blurry, lamp"]) == (["a desk"], ["blurry, lamp"])
    s = split_negation("the ball that is not green")
    assert s.negation_types == ("attribute",) and s.cues == ("not",)
    assert split_negation("a dog not running").negation_types == ("action",)


class _Chat:
    name = "fake-chat"

    def __init__(self, answers):
        self.answers, self.calls = answers, 0

    def chat(self, conversations, max_new_tokens=64):
        self.calls += 1
        assert all('Caption: "' in c[0]["content"] for c in conversations)
        return [self.answers[i % len(self.answers)] for i in range(len(conversations))]


def test_llm_splitter_parses_json_caches_and_falls_back():
    # prompt v1 answers plain strings; they stay readable and are typed "object"
    good = 'Sure: {"affirmative": "a street", "negated": ["cars"]}'
    chat = _Chat([good, "no idea"])
    sp = LLMSplitter(chat, prompt_version="v1")
    a, b = sp.split_batch(["a street with no cars", "a desk with no lamp"])
    assert (a.affirmative, a.negated, a.negation_types, a.cues) == ("a street", ("cars",), ("object",), ("no",))
    assert b == RuleSplitter().split("a desk with no lamp") and sp.fallbacks == 1
    sp.split_batch(["a street with no cars"])
    assert chat.calls == 1  # cached
    assert sp.name == "llm:fake-chat:v1"


def test_llm_splitter_v2_gives_typed_concepts_and_unwraps_a_prompted_llm():
    answer = ('{"affirmative": "a mug", "negated": [{"concept": "blue mug", "type": "attribute", "cue": "not"}, '
              '{"concept": "steam", "type": "object"}]}')
    chat = _Chat([answer])
    prompted = type("PromptedLLM", (), {"chat_backend": chat, "name": chat.name})()  # what make_llm returns
    sp = LLMSplitter(prompted)
    s = sp.split("a mug that is not blue and has no steam")
    assert sp.name == "llm:fake-chat:v2" and sp.fallbacks == 0
    assert s.concepts == (NegatedConcept("blue mug", "attribute", "not"), NegatedConcept("steam", "object", "no"))
    assert s.cues == ("not", "no") and s.affirmative == "a mug"  # the unnamed cue: the nearest before "steam"
    # an unknown type is a malformed answer: the rules answer instead, and it is counted
    bad = _Chat(['{"affirmative": "a mug", "negated": [{"concept": "blue", "type": "colour"}]}'])
    sp = LLMSplitter(bad)
    assert sp.split("a mug that is not blue") == split_negation("a mug that is not blue") and sp.fallbacks == 1
    # the v2 prompt names every type and keeps the caption slot
    from negation_encoder.prompt_files import load_prompt

    text = load_prompt("split_negation", "v2").format(caption="x")
    assert all(t in text for t in ("object", "attribute", "action", "relation")) and 'Caption: "x"' in text


def test_parse_split_answer_is_strict():
    assert parse_split_answer("x", json.dumps({"affirmative": "a", "negated": "cars"})) is None
    assert parse_split_answer("x", json.dumps({"affirmative": "a", "negated": ["cars", 3]})) is None
    assert parse_split_answer("x", None) is None
    s = parse_split_answer("a dog", '{"affirmative": "a dog", "negated": []}')
    assert s is not None and not s.has_negation and s.affirmative == "a dog"
    # an affirmative that names nothing is EMPTY_AFFIRMATIVE, so the trainer's bare rule reads it too
    for aff in ("", "an image", "the picture"):
        s = parse_split_answer("no fork here", json.dumps({"affirmative": aff, "negated": ["fork"]}))
        assert s.affirmative == EMPTY_AFFIRMATIVE and s.is_bare


def test_negation_split_fills_types_and_cues_and_round_trips():
    s = NegationSplit("a desk with no lamp or book", "a desk", ("lamp", "book"), ("no",))
    assert s.negation_types == ("object", "object") and s.concept_cues == ("no", "no")
    assert NegationSplit.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    d = split_negation("the cup which isn't red").to_dict()
    assert d["concepts"] == [{"text": "red cup", "type": "attribute", "cue": "isn't"}]
    assert (d["has_negation"], d["is_bare"]) == (True, False)
    assert split_negation("there is no dog").is_bare
    with pytest.raises(ValueError, match="colour"):
        NegationSplit("x", "y", ("red",), negation_types=("colour",))
    with pytest.raises(ValueError, match="2 negated concepts but 1 types"):
        NegationSplit("x", "y", ("a", "b"), negation_types=("object",))


class _UnsureSplitter:
    """Leaves every text whole with a reason, as the rule splitter does with a cue it cannot scope."""

    def split(self, text):
        return NegationSplit(text, text.strip(), unsure="a cue whose scope cannot be read")

    def split_batch(self, texts):
        return [self.split(t) for t in texts]


def test_an_unsure_split_negates_nothing_and_round_trips():
    s = _UnsureSplitter().split("a street with no cars")
    assert not s.has_negation and not s.is_bare and s.affirmative == "a street with no cars" and s.negated == ()
    d = s.to_dict()
    assert d["unsure"] == "a cue whose scope cannot be read" and d["concepts"] == []
    assert NegationSplit.from_dict(json.loads(json.dumps(d))) == s
    assert s != NegationSplit(s.text, s.affirmative)  # the reason is part of the split
    assert split_negation("a street with no cars").unsure is None and split_negation("a dog").to_dict()["unsure"] is None
    with pytest.raises(ValueError, match="an unsure split negates nothing"):
        NegationSplit("x", "x", ("cars",), unsure="why")


def test_callers_read_an_unsure_split_as_no_negation():
    """The negative-prompt route and split scoring key on `has_negation`: an unsure text goes as written,
    with no negative prompt, and is scored by its plain embedding."""
    import torch

    from negation_encoder.eval import encode_split, split_paired

    assert negation_prompts(["a street with no cars"], splitter=_UnsureSplitter()) == (["a street with no cars"],
                                                                                      [None])
    assert negation_prompts(["a street with no cars"], ["blurry"], splitter=_UnsureSplitter())[1] == ["blurry"]
    table = {"a street with no cars": [0.6, 0.8]}
    emb = encode_split(["a street with no cars"], _encoder(table), _UnsureSplitter())
    assert not emb.has_negation.any()
    torch.testing.assert_close(split_paired(torch.tensor([[1.0, 0.0]]), emb, 1.0), torch.tensor([0.6]))


def test_the_package_top_exports_split_negation():
    import negation_encoder

    assert negation_encoder.split_negation is split_negation


# ---------------------------------------------------------------------------------------------
# the world's wordings (negation_testbed.world.language): the splitter must read every one of them


def test_every_world_negation_form_splits_into_its_caption_and_the_concept():
    from negation_testbed.world.language import negation_forms

    caption = "a red cup in a kitchen"
    forms = {negation_forms(style)[0] for style in range(2560)}
    assert len(forms) > 100
    for form in sorted(forms):
        s = split_negation(form.format(caption=caption, concept="fork"))
        # a bare form affirms nothing: the trainer keeps it out of InfoNCE by `is_bare`
        want = caption if "{caption}" in form else EMPTY_AFFIRMATIVE
        assert (s.affirmative, s.negated, s.negation_types) == (want, ("fork",), ("object",)), form


@pytest.mark.parametrize("kind,value", [("cup", "red"), ("bus", "yellow")])
def test_world_referring_attribute_and_relation_forms(kind, value):
    from negation_testbed.world.language import ATTRIBUTE_FORMS, REFERRING_FORMS, RELATION_FORMS

    for form in REFERRING_FORMS:
        s = split_negation(form.format(kind=kind, value=value))
        assert (s.negated, s.negation_types) == ((f"{value} {kind}",), ("attribute",)), form
        assert s.affirmative.split()[-1] == kind, form  # "the cup", "a cup", "the other cup"
    caption = "a green plate on a table"
    for form in ATTRIBUTE_FORMS:
        s = split_negation(form.format(caption=caption, kind=kind, value=value))
        assert (s.negated, s.negation_types) == ((f"{value} {kind}",), ("attribute",)), form
    for form in RELATION_FORMS:
        s = split_negation(form.format(caption=caption, kind=kind, value="bench"))
        assert (s.negated, s.negation_types) == ((f"{kind} on the bench",), ("relation",)), form
        assert caption in s.affirmative and f"the {kind}" in s.affirmative, form


# ---------------------------------------------------------------------------------------------
# split scoring (negation_encoder.eval.split) on hand-made embeddings

def _encoder(table):
    import torch

    def encode(texts):
        return torch.tensor([table[t] for t in texts], dtype=torch.float32)

    return encode


def test_split_scores_by_hand_and_plain_captions_score_as_clip():
    import torch

    from negation_encoder.eval import concept_prompt, encode_split, split_paired, split_similarity

    table = {"a street with no cars": [0.6, 0.8], "a street": [1.0, 0.0], "a photo of a cars": [0.0, 1.0],
             "a street at night": [0.8, 0.6]}
    emb = encode_split(["a street with no cars", "a street at night"], _encoder(table))
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    got = split_similarity(images, emb, weight=0.5)
    # image 0: aff 1.0 - 0.5 * 0.0 = 1.0; image 1: aff 0.0 - 0.5 * 1.0 = -0.5; plain caption: plain cosines
    torch.testing.assert_close(got, torch.tensor([[1.0, 0.8], [-0.5, 0.6]]))
    torch.testing.assert_close(split_paired(images, emb, 0.5), torch.tensor([1.0, 0.6]))
    assert concept_prompt("the red cup") == "a photo of the red cup" and concept_prompt("fork") == "a photo of a fork"


def test_split_takes_the_max_over_negated_concepts_and_weight_fit_uses_given_data():
    import torch

    from negation_encoder.eval import encode_split, fit_split_weight, split_paired

    table = {"a desk with no lamp or book": [0.0, 0.0, 1.0], "a desk": [1.0, 0.0, 0.0],
             "a photo of a lamp": [0.0, 1.0, 0.0], "a photo of a book": [0.0, 0.6, 0.8],
             "a desk with a lamp": [0.7, 0.7, 0.0]}
    emb = encode_split(["a desk with no lamp or book"], _encoder(table))
    img = torch.tensor([[0.6, 0.0, 0.8]])
    # max over concepts: lamp 0.0, book 0.64 -> 0.6 - 1.0 * 0.64
    assert split_paired(img, emb, 1.0).item() == pytest.approx(0.6 - 0.64)
    # fitting picks the w that makes both items right: image A (a desk, something book-like, no lamp) is
    # the negated caption's; image B (a desk and a lamp) the affirmative one's
    neg = encode_split(["a desk with no lamp or book"] * 2, _encoder(table))
    aff = encode_split(["a desk with a lamp"] * 2, _encoder(table))
    images = torch.tensor([[0.8, 0.0, 0.6], [0.95, 0.312, 0.0]])
    # A right iff 0.8 - 0.48 w > 0.56 (w < 0.5); B right iff 0.95 - 0.312 w < 0.8834 (w > 0.21)
    fit = fit_split_weight(images, [neg, aff], correct=[0, 1], grid=(0.0, 0.1, 0.3, 0.6, 1.0))
    assert fit.weight == 0.3 and fit.accuracy == 1.0
    assert fit.curve == {0.0: 0.5, 0.1: 0.5, 0.3: 1.0, 0.6: 0.5, 1.0: 0.5} and fit.items == 2
