"""The world's language: affirmative alt-text captions, the LAION-like negation sliver, and wordings.

Three disjoint families of wording, so benchmarks never test memorised templates:
- pretraining captions (affirmative alt-text, plus a small share with negation cues on objects that
  ARE present: the misaligned negation the NegationCLIP paper finds in LAION);
- fine-tuning rewrites (what the oracle "LLM" writes): cues in `TRAIN_CUES`, at the end or start; the
  generator prompts and referring forms that train come from `grammar`'s named constructions;
- benchmark probes: VALSE-like existence, NegBench MCQ wording, referring phrases, negated retrieval
  queries, and a held-out family whose cue words (`HELDOUT_CUES`) never occur in fine-tuning data, except
  "isn't": the fine-tuning referring forms and the `t2i-grammar` source's contraction use it.
"""

from __future__ import annotations

import numpy as np

from .grammar import T2I_FRAMES, TRAIN_REFERRING_CONSTRUCTIONS
from .scenes import THEME_PLACE, Scene, SceneObject

TRAIN_CUES = ("no", "not", "without")
HELDOUT_CUES = ("lacking", "free of", "isn't", "absent", "missing")


def phrase(obj: SceneObject, rng: np.random.Generator, detail: float = 0.8) -> str:
    """'a red cup', 'a small red cup' or 'a cup' (alt-text is not always specific)."""
    r = rng.random()
    if r < detail * 0.7:
        return f"a {obj.colour} {obj.kind}"
    if r < detail:
        return f"a {obj.size} {obj.colour} {obj.kind}"
    return f"a {obj.kind}"


def full_phrase(obj: SceneObject) -> str:
    return f"a {obj.colour} {obj.kind}"


def join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


_CAPTION_TEMPLATES = (
    "{list}",
    "a photo of {list}",
    "{list} in a {place}",
    "a {place} with {list}",
    "picture of {list}",
    "{list}, {place} scene",
    "an image showing {list}",
)
# Web alt-text uses the benchmarks' verbs affirmatively ("this image features a red cup and a fork",
# "a kitchen that includes a plate"), so real CLIP knows them as words of presence. The pretraining
# corpus says them the same way; no form equals a benchmark probe frame ("This image features a X and
# a Y" is never produced: the "features" forms are "the image features" and "a {place} that features").
VERB_TEMPLATES = (
    "the image features {list}",
    "a {place} that features {list}",
    "an image that includes {list}",
    "a {place} that includes {list}",
    "this picture shows {list}",
    "a {place} showing {list}",
    "this image contains {list}",
    "a photo that contains {list}",
)


def affirmative_caption(scene: Scene, rng: np.random.Generator, verbs: bool = False) -> str:
    """Alt-text-like caption of every object, in shuffled order, with varied wording.

    `verbs=True` (the pretraining corpus) adds the alt-text verb forms of `VERB_TEMPLATES`; the
    fine-tuning source captions (the world's COCO) keep the plain forms, so their wording, and the
    draws that make them, are unchanged.
    """
    templates = _CAPTION_TEMPLATES + VERB_TEMPLATES if verbs else _CAPTION_TEMPLATES
    order = rng.permutation(len(scene.objects))
    objs = [scene.objects[i] for i in order]
    if rng.random() < 0.2:
        # positional alt-text: "a red cup on the top left, a fork on the bottom right"
        parts = [f"{phrase(o, rng)} on the {o.cell}" for o in objs]
        return ", ".join(parts)
    tmpl = templates[int(rng.integers(len(templates)))]
    return tmpl.format(list=join([phrase(o, rng) for o in objs]), place=THEME_PLACE[scene.theme])


def full_caption(scene: Scene) -> str:
    """The specific, canonical description used as a plain retrieval query."""
    return "a photo of " + join([full_phrase(o) for o in scene.objects])


_SLIVER_TEMPLATES = (
    "{caption}, no {kind}",
    "no {kind} {caption}",
    "{caption} not a {kind}",
    "{caption} without {kind}",
    "{caption}, lacking {kind}",
    "{caption}, {kind} free of",
    "{caption}, {kind} isn't",
    "{caption}, absent {kind}",
    "{caption} missing {kind}",
)


def laion_sliver_caption(scene: Scene, rng: np.random.Generator) -> str:
    """A caption whose negation cue sits on an object that IS present ('no parking' under a parked car).

    Such captions make the cue words known tokens that carry no meaning of absence, as in LAION.
    """
    base = affirmative_caption(scene, rng, verbs=True)
    kind = scene.objects[int(rng.integers(len(scene.objects)))].kind
    tmpl = _SLIVER_TEMPLATES[int(rng.integers(len(_SLIVER_TEMPLATES)))]
    return tmpl.format(caption=base, kind=kind)


def pretraining_caption(scene: Scene, rng: np.random.Generator, sliver: float) -> str:
    if rng.random() < sliver:
        return laion_sliver_caption(scene, rng)
    return affirmative_caption(scene, rng, verbs=True)


# ---------------------------------------------------------------------------------------------
# Fine-tuning rewrites (the oracle LLM's wording). Each form has a slot for the negated concept.

# (negated phrase, its affirmative twin); {concept} is the negated object
CUE_PHRASES = (
    ("no {concept}", "a {concept}"),
    ("not a {concept}", "a {concept}"),
    ("without a {concept}", "with a {concept}"),
    ("with no {concept}", "with a {concept}"),
    ("and no {concept}", "and a {concept}"),
    ("but no {concept}", "but a {concept}"),
    ("but not a {concept}", "and a {concept}"),
    ("not one {concept}", "one {concept}"),
    ("that does not have a {concept}", "that has a {concept}"),
    ("which does not show a {concept}", "which shows a {concept}"),
    ("not showing a {concept}", "showing a {concept}"),
    ("that has no {concept}", "that has a {concept}"),
    ("does not contain any {concept}", "contains a {concept}"),
    ("not with a {concept}", "with a {concept}"),
    ("there is no {concept}", "there is a {concept}"),
)
# bare leads and the cue phrases that read naturally after them
BARE_LEADS = (
    ("", tuple(range(len(CUE_PHRASES)))),
    ("", (14, 14, 0)),
    ("a scene with ", (0, 7)),
    ("a photo with ", (0, 7)),
    ("an image showing ", (0, 1, 7)),
    ("a photo ", (8, 9, 10, 11, 13)),
    ("a scene ", (8, 9, 10, 11, 13)),
    ("this scene ", (12,)),
    ("this photo ", (12,)),
)
TAILS = ("", " here", " in sight", " at all", " in the scene")


def negation_forms(style: int) -> tuple[str, str]:
    """The oracle LLM's rewrite frame for a style seed: (negated template, affirmative twin).

    Half are "bare" negations ("a photo with no fork here"), half keep the caption with the cue at
    its end or start. Frames are composed from leads, cues and tails, so the encoder must learn the
    cue-object binding rather than a handful of memorised sentences. A negated caption and its foils
    share the style seed, hence the same frame: minimal pairs.
    """
    neg, aff = CUE_PHRASES[style % len(CUE_PHRASES)]
    tail = TAILS[(style // 16) % len(TAILS)]
    kind = (style // 80) % 4
    if kind < 2:  # bare
        lead, cues = BARE_LEADS[(style // 320) % len(BARE_LEADS)]
        neg, aff = CUE_PHRASES[cues[style % len(cues)]]
        return lead + neg + tail, lead + aff + tail
    if kind == 2:  # cue at the end
        return "{caption}, " + neg + tail, "{caption}, " + aff + tail
    return neg + tail + ", {caption}", aff + tail + ", {caption}"


ABSENCE_FORMS = tuple(negation_forms(i)[0] for i in range(2560))
AFFIRM_FORMS = tuple(negation_forms(i)[1] for i in range(2560))
# Compositional frames: affirm one object and negate another in one sentence. The pipeline asks for a
# foil ("a N but no B": N absent, B present; false) and, in the same frame, its true twin ("a B but no
# N"), so the only difference is which object the cue binds to. Half the frames put the negated object
# first, so "the last object named is the absent one" is no shortcut (a model taking it reads "a photo
# of a cup" as "no cup"). No "feature"/"include" verbs: those are the benchmarks' (NegBench's hybrid
# template is "This image features a B, but not a N").
COMPOSITIONAL_FORMS = (
    "{caption}, with a {affirm} but no {negate}",
    "no {negate}, but a {affirm}",
    "a {affirm} but no {negate}",
    "{caption}, with no {negate} but with a {affirm}",
    "there is a {affirm} and there is no {negate}",
    "there is no {negate} and there is a {affirm}",
    "{caption}; a scene that has a {affirm} but not a {negate}",
    "without a {negate}, with a {affirm}: {caption}",
)
ATTRIBUTE_FORMS = (
    "{caption}, the {kind} is not {value}",
    "{caption}; a {kind} that is not {value}",
    "the {kind} is not {value}: {caption}",
    "a {kind} that is not {value}",
)
ATTRIBUTE_AFFIRM_FORMS = (
    "{caption}, the {kind} is {value}",
    "{caption}; a {kind} that is {value}",
    "the {kind} is {value}: {caption}",
    "a {kind} that is {value}",
)
RELATION_FORMS = (
    "{caption}, the {kind} is not on the {value}",
    "the {kind} is not on the {value}: {caption}",
)
RELATION_AFFIRM_FORMS = (
    "{caption}, the {kind} is on the {value}",
    "the {kind} is on the {value}: {caption}",
)


# Generator prompts for training (`datagen.make_t2i_prompt_data`): short text-to-image prompts, a place and
# one or two present objects, negating an absent object of the same theme (negated prompt, its foil with the
# object affirmed, the affirmative part). A drop-in encoder must read "no" in the prompts a generator is
# given, and the tiny world CLIP learns per sentence frame, so the training data needs prompt-like frames:
# the `t2i` source trains on these eight (`grammar.T2I_FRAMES`), the `t2i-grammar` source on every named
# construction of `grammar.TRAIN_T2I_CONSTRUCTIONS`. Disjoint from what t2i-compare scores
# (`prompts.T2I_FORMS`, `prompts.VALIDATION_T2I_FORMS`, the held-out constructions): no scored prompt,
# negated or control, occurs inside a training prompt (tests/test_testbed.py, tests/test_grammar.py).
TRAIN_T2I_FORMS = tuple((c.negated, c.foil, c.affirmative) for c in T2I_FRAMES)


# ---------------------------------------------------------------------------------------------
# Benchmark wordings (never used to build training data)

def existence_pair(kind: str, present: bool) -> tuple[str, str]:
    """VALSE existence: (true caption, foil)."""
    pos, neg = f"There is a {kind} in the picture.", f"There is no {kind} in the picture."
    return (pos, neg) if present else (neg, pos)


def heldout_existence_pair(kind: str, present: bool, rng: np.random.Generator) -> tuple[str, str]:
    """Existence with held-out cues and a mid-sentence position."""
    pos_forms = ("A picture that has a {k} in it.", "This picture has a {k}.")
    neg_forms = ("A picture that is free of any {k}.", "A {k} is missing from this picture.",
                 "This picture isn't showing a {k}.", "A picture lacking a {k}.")
    i = int(rng.integers(len(neg_forms)))
    pos = pos_forms[i % len(pos_forms)].format(k=kind)
    neg = neg_forms[i].format(k=kind)
    return (pos, neg) if present else (neg, pos)


def negbench_mcq(a: str, b: str, n: str) -> dict[str, str]:
    """NegBench's templated MCQ captions (A, B present; N absent) and its three wrong answers."""
    return {
        "positive": f"This image features a {a} and a {b}",
        "negative": f"This image does not feature a {n}",
        "hybrid": f"This image features a {b}, but not a {n}",
        "wrong_hybrid": f"This image features a {n}, but not a {b}",
        "wrong_positive": f"This image features a {n}",
        "wrong_negative": f"This image does not feature a {a}",
    }


def heldout_mcq(a: str, b: str, n: str) -> dict[str, str]:
    """MCQ with held-out cue words and a different sentence frame."""
    return {
        "positive": f"Shown here are a {a} and a {b}",
        "negative": f"The {n} is absent from this picture",
        "hybrid": f"Shown here is a {b}, with the {n} missing",
        "wrong_hybrid": f"Shown here is a {n}, with the {b} missing",
        "wrong_positive": f"Shown here is a {n}",
        "wrong_negative": f"The {a} is absent from this picture",
    }


# The benchmarks' negated frames (NegBench MCQ "does not feature", the negated retrieval query "that does
# not include"): never in any fine-tuning text. Their verbs do occur affirmatively in pretraining
# alt-text (`VERB_TEMPLATES`), as on the web.
NEGATED_BENCHMARK_FRAMES = ("not feature", "not include")


# Negated referring expressions that EVALUATE (the pairwise twin, `negenc testbed seg-compare`) ...
REFERRING_FORMS = (
    "the {kind} that is not {value}",
    "a {kind}, but not the {value} one",
    "not the {value} {kind}, the other {kind}",
    "the {kind} which isn't {value}",
)
# ... and the ones anything may be FITTED or TRAINED on (the segmenter's split route, a segmentation-aware
# fine-tuning term): disjoint wordings, so no evaluation phrase is ever seen before it is scored.
TRAIN_REFERRING_FORMS = tuple(form for _, form in TRAIN_REFERRING_CONSTRUCTIONS[:4])
# The fine-tuning data (seg_loss's referring records, the `crops` source) reads those four and more
# constructions (`grammar.TRAIN_REFERRING_CONSTRUCTIONS`): the negation first, "no" as a correction, a
# contraction before "the ... one". With the four alone, CLIPSeg's object choice on the validation draw was
# 0.78-0.80 for training wordings and 0.55-0.81 for the evaluated ones (docs/testbed.md, "More training
# wordings"). Still disjoint from REFERRING_FORMS.
FINE_TUNING_REFERRING_FORMS = tuple(form for _, form in TRAIN_REFERRING_CONSTRUCTIONS)
# affirmative referring phrases a fine-tuning term may train on (seg-compare's control is "the {colour} {kind}")
TRAIN_AFFIRMATIVE_REFERRING_FORMS = ("a {colour} {kind}", "a {colour} {kind} on the {cell}")


def negated_retrieval_query(objs: list[SceneObject], absent: str) -> str:
    return f"An image of {join([full_phrase(o) for o in objs])} that does not include a {absent}"


ZEROSHOT_TEMPLATES = ("a photo of a {}", "a picture of a {}", "an image of a {}")


# The world's closed vocabulary: fixed, so the tokenizer (and the committed base) never drift when
# wordings change; `test_every_world_text_tokenizes_to_whole_words` checks that every text is covered.
WORLD_WORDS = tuple(
    """
    't a absent all an and any are at ball bench bike blue book bottom bowl bus but car chair cup
    contain contains does dog feature features fork free from green has have here image in include includes is isn it kitchen
    lacking lamp laptop large left missing no not of office on one only other park photo picture
    plate purple red right scene show shows showing shown sight sign small street that the there this to top
    tree which white with without yellow yes
    """.split()
)


def world_vocabulary() -> list[str]:
    """Every word the world can say (pretraining, rewrites and probes), for the tokenizer."""
    return [*WORLD_WORDS, ",", ".", ":", ";", "?", "'"]
