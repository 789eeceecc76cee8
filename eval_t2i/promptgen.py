"""Builds our own Neg Score set, `negation_v1`, and its affirmative control set `negation_v1_control`.

    python -m eval_t2i.promptgen      # rewrites eval_t2i/prompts/negation_v1*.json

The prompts are written here by hand as (subject, concept) tables and a few templates per negation
type, so the set is reproducible and reviewable in one file; a test checks the shipped JSON equals
this output. Four negation types (object absence, attribute, action, scene) and a spread of cue words
("no", "with no", "without", "not", "isn't", "free of", "lacking", "doesn't have", "there is no",
"nor"), because an encoder that learned one cue word has not learned negation. The control set keeps
each scene's subject without any negation, to show a swapped encoder still draws what was asked.
"""

from __future__ import annotations

import json
from pathlib import Path

# (subject phrase with article, subject noun, absent object phrase, object noun phrase for the question)
OBJECTS = [
    ("a kitchen", "kitchen", "people", "people"), ("a living room", "living room", "a television", "a television"),
    ("a beach", "beach", "umbrellas", "umbrellas"), ("a city street", "street", "cars", "cars"),
    ("a bedroom", "bedroom", "a lamp", "a lamp"), ("a desk", "desk", "a computer", "a computer"),
    ("a dinner table", "table", "plates", "plates"), ("a bookshelf", "bookshelf", "books", "books"),
    ("a parking lot", "parking lot", "cars", "cars"), ("a playground", "playground", "children", "children"),
    ("a harbor", "harbor", "boats", "boats"), ("a garden", "garden", "flowers", "flowers"),
    ("a classroom", "classroom", "students", "students"), ("a bathroom", "bathroom", "a mirror", "a mirror"),
    ("a pizza", "pizza", "cheese", "cheese"), ("a cake", "cake", "candles", "candles"),
    ("a bowl of soup", "bowl", "a spoon", "a spoon"), ("a sandwich", "sandwich", "lettuce", "lettuce"),
    ("a christmas tree", "christmas tree", "ornaments", "ornaments"), ("a fireplace", "fireplace", "fire", "fire"),
    ("a night sky", "sky", "a moon", "a moon"), ("a mountain", "mountain", "snow", "snow"),
    ("a river", "river", "a bridge", "a bridge"), ("a field", "field", "cows", "cows"),
    ("a fruit bowl", "fruit bowl", "bananas", "bananas"), ("a train platform", "train platform", "passengers", "passengers"),
    ("a tennis court", "tennis court", "a net", "a net"), ("a soccer field", "soccer field", "players", "players"),
    ("a library", "library", "readers", "readers"), ("an office", "office", "chairs", "chairs"),
    ("a window sill", "window sill", "plants", "plants"), ("a bicycle", "bicycle", "a basket", "a basket"),
    ("a sailboat", "sailboat", "sails", "sails"), ("a snowman", "snowman", "a carrot nose", "a carrot nose"),
    ("a guitar", "guitar", "strings", "strings"), ("a clock tower", "clock tower", "a clock", "a clock"),
    ("a laptop", "laptop", "a keyboard", "a keyboard"), ("a coffee cup", "coffee cup", "a handle", "a handle"),
    ("a fish tank", "fish tank", "fish", "fish"), ("a birthday party", "birthday party", "balloons", "balloons"),
    ("a desert", "desert", "cactus plants", "cactus plants"), ("a swimming pool", "swimming pool", "water", "water"),
    ("a wall", "wall", "paintings", "paintings"), ("a road", "road", "traffic signs", "traffic signs"),
    ("a picnic blanket", "picnic blanket", "food", "food"), ("a street market", "market", "vendors", "vendors"),
    ("a car", "car", "wheels", "wheels"), ("a tree", "tree", "leaves", "leaves"),
]
OBJECT_TEMPLATES = [  # (cue, template); {s} subject phrase, {o} object phrase, {b} the object without article
    ("with no", "{s} with no {b}"), ("without", "{s} without {o}"), ("free of", "{s} free of {b}"),
    ("lacking", "{s} lacking {b}"), ("doesn't have", "{s} that doesn't have {o}"),
    ("there is no", "{s}, and there {is_are} no {b}"), ("no", "{s}, no {b}"),
]
# two absent objects at once: (subject phrase, noun, first, second)
MULTI = [
    ("a man", "man", "a hat", "glasses"), ("a desk", "desk", "a lamp", "a computer"),
    ("a kitchen counter", "counter", "knives", "cups"), ("a beach", "beach", "people", "boats"),
    ("a living room", "living room", "a sofa", "a rug"), ("a street", "street", "cars", "bicycles"),
    ("a woman", "woman", "earrings", "a necklace"), ("a park", "park", "trees", "benches"),
    ("a table", "table", "plates", "glasses"), ("a bedroom", "bedroom", "a bed", "a window"),
]
MULTI_TEMPLATES = [("without", "{s} without {a} or {b}"), ("nor", "{s} with neither {a} nor {b}")]
# (subject phrase, noun, attribute)
ATTRIBUTES = [
    ("a car", "car", "red"), ("a cat", "cat", "black"), ("a vase", "vase", "blue"), ("an apple", "apple", "green"),
    ("a dress", "dress", "white"), ("a bus", "bus", "yellow"), ("a house", "house", "wooden"),
    ("a chair", "chair", "broken"), ("a dog", "dog", "fluffy"), ("a teapot", "teapot", "metal"),
    ("a sofa", "sofa", "leather"), ("a balloon", "balloon", "round"), ("a door", "door", "open"),
    ("a bottle", "bottle", "empty"), ("a shirt", "shirt", "striped"), ("a tree", "tree", "tall"),
    ("a horse", "horse", "brown"), ("an umbrella", "umbrella", "purple"), ("a boat", "boat", "small"),
    ("a book", "book", "old"), ("a lamp", "lamp", "lit"), ("a sky", "sky", "cloudy"),
    ("a bird", "bird", "colorful"), ("a hat", "hat", "pink"), ("a banana", "banana", "ripe"),
    ("a window", "window", "dirty"), ("a shoe", "shoe", "new"), ("a building", "building", "modern"),
    ("a pumpkin", "pumpkin", "orange"), ("a mug", "mug", "ceramic"),
]
ATTRIBUTE_TEMPLATES = [("not", "{s} that is not {a}"), ("isn't", "{s} that isn't {a}"), ("not", "a not {a} {n}")]
# (subject phrase, noun, action as a participle phrase)
ACTIONS = [
    ("a dog", "dog", "running"), ("a bird", "bird", "flying"), ("a man", "man", "smiling"),
    ("a woman", "woman", "reading a book"), ("a child", "child", "playing with a ball"),
    ("a cat", "cat", "sleeping"), ("a horse", "horse", "galloping"), ("a chef", "chef", "cooking"),
    ("a girl", "girl", "dancing"), ("a boy", "boy", "riding a bicycle"), ("a musician", "musician", "playing a guitar"),
    ("a baby", "baby", "crying"), ("a runner", "runner", "jumping"), ("a student", "student", "writing"),
    ("an old man", "old man", "walking with a cane"), ("a couple", "couple", "holding hands"),
    ("a monkey", "monkey", "eating a banana"), ("a surfer", "surfer", "riding a wave"),
    ("a dog", "dog", "wearing a collar"), ("a woman", "woman", "holding an umbrella"),
    ("a man", "man", "wearing a tie"), ("a skier", "skier", "skiing downhill"),
    ("a waiter", "waiter", "carrying a tray"), ("a duck", "duck", "swimming"),
    ("a painter", "painter", "painting"), ("a farmer", "farmer", "driving a tractor"),
]
ACTION_TEMPLATES = [("not", "{s} not {v}"), ("isn't", "{s} who isn't {v}")]
# (subject phrase, noun, place phrase with its preposition, place noun)
SCENES = [
    ("a horse", "horse", "in a field", "field"), ("a boat", "boat", "on the water", "water"),
    ("a car", "car", "on a road", "road"), ("a cat", "cat", "on a sofa", "sofa"),
    ("a tent", "tent", "in a forest", "forest"), ("a bench", "bench", "in a park", "park"),
    ("a cow", "cow", "on a farm", "farm"), ("a penguin", "penguin", "on ice", "ice"),
    ("a camel", "camel", "in a desert", "desert"), ("a surfboard", "surfboard", "on a beach", "beach"),
    ("a bicycle", "bicycle", "on a street", "street"), ("a piano", "piano", "in a concert hall", "concert hall"),
    ("a deer", "deer", "in the woods", "woods"), ("an airplane", "airplane", "in the sky", "sky"),
    ("a fish", "fish", "in water", "water"), ("a train", "train", "at a station", "station"),
    ("a lighthouse", "lighthouse", "by the sea", "sea"), ("a sheep", "sheep", "on a hill", "hill"),
    ("a fox", "fox", "in the snow", "snow"), ("a bed", "bed", "in a bedroom", "bedroom"),
    ("a sailboat", "sailboat", "in a harbor", "harbor"), ("a frog", "frog", "on a lily pad", "lily pad"),
    ("a pickup truck", "truck", "in a city", "city"), ("a picnic table", "picnic table", "in a garden", "garden"),
]
SCENE_TEMPLATES = [("not", "{s}, not {p}"), ("not", "{s} that is not {p}")]


def _is_are(noun_phrase: str) -> str:
    return "Is" if noun_phrase.startswith(("a ", "an ")) or noun_phrase in ("snow", "water", "fire", "cheese",
                                                                            "lettuce", "food", "fish") else "Are"


def _entry(kind: str, cue: str, prompt: str, subject_phrase: str, subject: str, negated: list[str],
           negated_questions: list[str]) -> dict:
    return {"prompt": prompt, "subject": subject, "negated_concepts": negated, "negation_type": kind, "cue": cue,
            "questions": [f"Is there {subject_phrase} in the image?", *negated_questions],
            "_subject_phrase": subject_phrase}


def build_entries() -> list[dict]:
    """All `negation_v1` entries (ids assigned in order, per type)."""
    out: list[dict] = []
    for i, (s, noun, o, oq) in enumerate(OBJECTS):
        for j in (i % len(OBJECT_TEMPLATES), (i + 3) % len(OBJECT_TEMPLATES)) if i < 12 else (i % len(OBJECT_TEMPLATES),):
            cue, tpl = OBJECT_TEMPLATES[j]
            concept = o.removeprefix("a ").removeprefix("an ")
            q = f"{_is_are(oq)} there {oq} in the image?"
            text = tpl.format(s=s, o=o, b=concept, is_are=_is_are(oq).lower())
            out.append(_entry("object", cue, text, s, noun, [concept], [q]))
    for i, (s, noun, a, b) in enumerate(MULTI):
        cue, tpl = MULTI_TEMPLATES[i % len(MULTI_TEMPLATES)]
        concepts = [x.removeprefix("a ").removeprefix("an ") for x in (a, b)]
        qs = [f"{_is_are(x)} there {x} in the image?" for x in (a, b)]
        out.append(_entry("object", cue, tpl.format(s=s, a=a, b=b), s, noun, concepts, qs))
    for i, (s, noun, a) in enumerate(ATTRIBUTES):
        cue, tpl = ATTRIBUTE_TEMPLATES[i % len(ATTRIBUTE_TEMPLATES)]
        out.append(_entry("attribute", cue, tpl.format(s=s, a=a, n=noun), s, noun, [f"{a} {noun}"],
                          [f"Is the {noun} {a}?"]))
    for i, (s, noun, v) in enumerate(ACTIONS):
        cue, tpl = ACTION_TEMPLATES[i % len(ACTION_TEMPLATES)]
        out.append(_entry("action", cue, tpl.format(s=s, v=v), s, noun, [v], [f"Is the {noun} {v}?"]))
    for i, (s, noun, p, place) in enumerate(SCENES):
        cue, tpl = SCENE_TEMPLATES[i % len(SCENE_TEMPLATES)]
        out.append(_entry("scene", cue, tpl.format(s=s, p=p), s, noun, [place], [f"Is the {noun} {p}?"]))
    counters: dict[str, int] = {}
    for e in out:
        counters[e["negation_type"]] = counters.get(e["negation_type"], 0) + 1
        e["id"] = f"v1_{e['negation_type']}_{counters[e['negation_type']]:03d}"
    return out


def build_sets() -> tuple[dict, dict]:
    """(negation_v1, negation_v1_control) as the JSON objects shipped in `eval_t2i/prompts/`."""
    keys = ("id", "prompt", "subject", "negated_concepts", "negation_type", "cue", "questions")
    entries = build_entries()
    negated = [{k: e[k] for k in keys} for e in entries]
    control = [{"id": f"ctrl_{e['id']}", "prompt": e["_subject_phrase"], "subject": e["subject"],
                "negated_concepts": [], "negation_type": "none", "cue": "none", "questions": e["questions"][:1]}
               for e in entries]
    return ({"name": "negation_v1", "version": 1, "prompts": negated},
            {"name": "negation_v1_control", "version": 1, "prompts": control})


def write_sets(folder: Path) -> None:
    for data in build_sets():
        (folder / f"{data['name']}.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_sets(Path(__file__).resolve().parent / "prompts")
