"""COCO's object categories as captions name them: the 80 names, the words captions use for a few of
them, and the article a prompt puts before each.

Why a table of words: COCO annotates "person", but captions say "a man", "two women", "a skier". A
generator that treated "person" as absent from "a man riding a bike" would write "a man riding a bike, no
person", a false caption; the miner would not see that the caption shares its person with an image.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

# COCO's 80 category names, in category-id order (Rand-P1's default list; the t2i generator's vocabulary)
COCO_CATEGORIES = tuple(c.strip() for c in (
    "person, bicycle, car, motorcycle, airplane, bus, train, truck, boat, traffic light, fire hydrant, stop sign, "
    "parking meter, bench, bird, cat, dog, horse, sheep, cow, elephant, bear, zebra, giraffe, backpack, umbrella, "
    "handbag, tie, suitcase, frisbee, skis, snowboard, sports ball, kite, baseball bat, baseball glove, skateboard, "
    "surfboard, tennis racket, bottle, wine glass, cup, fork, knife, spoon, bowl, banana, apple, sandwich, orange, "
    "broccoli, carrot, hot dog, pizza, donut, cake, chair, couch, potted plant, bed, dining table, toilet, tv, laptop, "
    "mouse, remote, keyboard, cell phone, microwave, oven, toaster, sink, refrigerator, book, clock, vase, scissors, "
    "teddy bear, hair drier, toothbrush").split(","))

# words captions use for a category besides its name (whole words; plural forms listed where irregular)
ALIASES: dict[str, tuple[str, ...]] = {
    "person": ("man", "men", "woman", "women", "people", "person", "persons", "boy", "girl", "child", "children",
               "kid", "guy", "lady", "ladies", "player", "skier", "surfer", "skateboarder", "snowboarder", "rider",
               "baby", "crowd", "someone", "gentleman", "batter", "catcher", "pitcher", "couple", "family",
               "officer", "chef", "teenager", "adult"),
    "bicycle": ("bike", "cycle"),
    "motorcycle": ("motorbike", "motor bike", "scooter"),
    "airplane": ("plane", "jet", "aircraft", "airliner"),
    "tv": ("television", "monitor", "tv"),
    "couch": ("sofa",),
    "cell phone": ("phone", "cellphone", "smartphone"),
    "dining table": ("table",),
    "sports ball": ("ball", "soccer ball", "tennis ball", "football", "baseball"),
    "donut": ("doughnut",),
    "laptop": ("computer", "notebook"),
    "potted plant": ("plant", "houseplant", "flower pot"),
    "refrigerator": ("fridge",),
    "hair drier": ("hair dryer", "blow dryer"),
    "wine glass": ("glass of wine", "wineglass"),
    "hot dog": ("hotdog",),
    "mouse": ("computer mouse",),
    "remote": ("remote control", "controller"),
    "cup": ("mug",),
    "handbag": ("purse", "bag"),
}
# names that take no "a": "a skis" is not English
_PLURAL_NAMES = frozenset({"skis", "scissors"})
# aliases that name several ("no people" is English, "a people" and "there is no men" are not): never a noun to
# put after "a" or "no" in place of the category's name
_GROUP_ALIASES = frozenset({"men", "women", "people", "persons", "children", "ladies", "crowd", "couple", "family"})


@lru_cache(maxsize=4096)
def _naming(category: str) -> re.Pattern:
    """One pattern for every word that names `category`: what `validation.mentions` matches (the name, or its
    head word: "light" for "traffic light") and its aliases, whole words, with a plural "s". Compiled once:
    a generator asks it for 80 categories of every caption."""
    words = category.lower().split()
    heads = [category.lower()] + ([words[-1]] if len(words) > 1 else [])
    alternatives = "|".join(re.escape(w) for w in (*heads, *ALIASES.get(category, ())))
    return re.compile(r"(?<!\w)(?:" + alternatives + r")s?(?!\w)")


def names_category(text: str, category: str) -> bool:
    """Whether `text` names `category`: its name (or head word: "light" for "traffic light") or an alias,
    whole words, case-insensitive, with a plural "s"."""
    return _naming(category).search(text.lower()) is not None


def named_categories(text: str, vocabulary: Iterable[str]) -> list[str]:
    """The categories of `vocabulary` that `text` names, in vocabulary order."""
    return [c for c in vocabulary if names_category(text, c)]


def caption_word(text: str, category: str) -> str:
    """The noun `text` uses for `category` when it uses one for a single thing ("man" for person in "a man
    riding a bike", "bike" for bicycle), else the category's name: what a foil negating it should say."""
    low = text.lower()
    for word in (category, *ALIASES.get(category, ())):
        if word not in _GROUP_ALIASES and re.search(r"(?<!\w)" + re.escape(word) + r"(?!\w)", low):
            return word
    return category


def with_article(name: str) -> str:
    """'a fork', 'an apple', 'skis': a category as one affirmed thing."""
    if name in _PLURAL_NAMES:
        return name
    return ("an " if name[:1] in "aeiou" else "a ") + name
