"""The rule splitter's scope rules on a table of hand-written captions (none from a benchmark file).

Each case: the caption, the affirmative part, the negated concepts and their types ("" = negates
nothing). The cue lexicon must agree with the splitter on every case: `has_negation_cue` is true exactly
where the splitter finds a negation (lexicalised negation is neither).
"""

import pytest

from negation_encoder.splitting import (
    EMPTY_AFFIRMATIVE,
    NEGATION_CUES,
    cue_matcher,
    find_cues,
    has_negation_cue,
    split_negation,
)

E = EMPTY_AFFIRMATIVE
OBJ, A, V, R = "object", "attribute", "action", "relation"

SCOPE = [  # the scope ends before trailing place / time / manner modifiers, which stay affirmed
    ("a boy without a hat riding a bike", "a boy riding a bike", ["hat"], [OBJ]),
    ("a lake with no boats at sunset", "a lake at sunset", ["boats"], [OBJ]),
    ("a kitchen with a red cup and no fork", "a kitchen with a red cup", ["fork"], [OBJ]),
    ("a woman with no umbrella walking in the rain", "a woman walking in the rain", ["umbrella"], [OBJ]),
    ("a parking lot with no cars at night", "a parking lot at night", ["cars"], [OBJ]),
    ("a horse without a saddle grazing quietly", "a horse grazing quietly", ["saddle"], [OBJ]),
    ("a table with no chairs in the garden", "a table in the garden", ["chairs"], [OBJ]),
    ("a beach with no swimmers today", "a beach today", ["swimmers"], [OBJ]),
    ("a runner without a shirt, smiling at the camera", "a runner, smiling at the camera", ["shirt"], [OBJ]),
    ("a door without a handle that leads outside", "a door that leads outside", ["handle"], [OBJ]),
    ("a man without a hat and a woman with a dog", "a man and a woman with a dog", ["hat"], [OBJ]),
    # "of" complements stay in the concept; fillers ("on it", "inside", "in sight", "at all") go
    ("a tray with no cup of tea on it", "a tray", ["cup of tea"], [OBJ]),
    ("a garage without any bicycles inside", "a garage", ["bicycles"], [OBJ]),
    ("an empty street with no cars in sight", "an empty street", ["cars"], [OBJ]),
    ("a room with no light at all", "a room", ["light"], [OBJ]),
    ("a street without people or cars, at dawn", "a street, at dawn", ["people", "cars"], [OBJ, OBJ]),
    ("A dog (without a leash) in the park.", "A dog in the park.", ["leash"], [OBJ]),
]

LEXICALISED = [  # names, signs, fixed phrases and non-/un- words negate nothing
    ("a no entry sign by the road", "a no entry sign by the road", [], []),
    ("a no parking zone", "a no parking zone", [], []),
    ("a not-for-sale tag on a bike", "a not-for-sale tag on a bike", [], []),
    ("a no-fly zone over the city", "a no-fly zone over the city", [], []),
    ("a red No Smoking sign on a door", "a red No Smoking sign on a door", [], []),
    ('a sign that says "no dogs allowed"', 'a sign that says "no dogs allowed"', [], []),
    ("a copy of Never Let Me Go on a shelf", "a copy of Never Let Me Go on a shelf", [], []),
    ("a nonstick pan on the stove", "a nonstick pan on the stove", [], []),
    ("an unlit candle on a table", "an unlit candle on a table", [], []),
    ("a non-smoking room with two beds", "a non-smoking room with two beds", [], []),
    ("an unmade bed with white sheets", "an unmade bed with white sheets", [], []),
    ("nothing but sand", "nothing but sand", [], []),
    ("a desert with nothing but sand and rocks", "a desert with nothing but sand and rocks", [], []),
    ("not only a cat but also a dog", "not only a cat but also a dog", [], []),
    ("without a doubt the tallest tree here", "without a doubt the tallest tree here", [], []),
    ("a knot on a rope", "a knot on a rope", [], []),
    ("a nobleman in armour", "a nobleman in armour", [], []),
    # comparatives bound a number or a degree: nothing is absent
    ("a table with no more than two cups", "a table with no more than two cups", [], []),
    ("a room with no fewer than three chairs", "a room with no fewer than three chairs", [], []),
    ("a jar with no less than ten cookies", "a jar with no less than ten cookies", [], []),
    ("not more than three birds on a wire", "not more than three birds on a wire", [], []),
    ("a shed that is nothing more than a box", "a shed that is nothing more than a box", [], []),
    ("a puppy no bigger than a shoe", "a puppy no bigger than a shoe", [], []),
    ("not just a cat on the sofa", "not just a cat on the sofa", [], []),
    ("not merely a garden but a forest", "not merely a garden but a forest", [], []),
]

QUANTIFIERS = [  # except, neither ... nor, none of, not a single, lists
    # "everything" affirms nothing depictable: it goes with the negation
    ("a fruit bowl with everything except grapes", "a fruit bowl", ["grapes"], [OBJ]),
    ("a classroom with everyone except the teacher", "a classroom", ["teacher"], [OBJ]),
    # a real noun phrase before "except" stays, and "the red one" is one of its kind: an attribute
    ("all the chairs except the red one", "all the chairs", ["red chairs"], [A]),
    # an exception to a negated object is there: it is affirmed, on the connector the negation took
    ("a room without any furniture except a chair", "a room with a chair", ["furniture"], [OBJ]),
    ("a room with no furniture apart from a bed", "a room with a bed", ["furniture"], [OBJ]),
    ("a street with no cars other than a taxi", "a street with a taxi", ["cars"], [OBJ]),
    ("a shelf that has no books except a dictionary", "a shelf that has a dictionary", ["books"], [OBJ]),
    ("no animals besides a cat", "a cat", ["animals"], [OBJ]),
    ("a garage without tools, aside from a hammer", "a garage with a hammer", ["tools"], [OBJ]),
    ("a desk that does not have any papers except a letter", "a desk with a letter", ["papers"], [OBJ]),
    ("a shelf with no books except for one red book", "a shelf with one red book", ["books"], [OBJ]),
    ("a room with a bed and no chairs except a stool", "a room with a bed and a stool", ["chairs"], [OBJ]),
    # a negation that opens the sentence leaves its place as the affirmed subject
    ("neither a fork nor a knife on the plate", "the plate", ["fork", "knife"], [OBJ, OBJ]),
    ("a garden with neither flowers nor trees", "a garden", ["flowers", "trees"], [OBJ, OBJ]),
    ("the cup is neither red nor blue", "the cup", ["red cup", "blue cup"], [A, A]),
    ("none of the windows are open", "the windows", ["open windows"], [A]),
    ("a shelf with none of the books", "a shelf", ["books"], [OBJ]),
    ("not a single cloud in the sky", "the sky", ["cloud"], [OBJ]),
    ("a street with not a single car", "a street", ["car"], [OBJ]),
    ("not one person on the bench", "the bench", ["person"], [OBJ]),
    ("no cars, buses or bikes", E, ["cars", "buses", "bikes"], [OBJ, OBJ, OBJ]),
    ("a road with no cars, buses, or bikes", "a road", ["cars", "buses", "bikes"], [OBJ, OBJ, OBJ]),
    ("a street with no cars, buses and bikes", "a street", ["cars", "buses", "bikes"], [OBJ, OBJ, OBJ]),
    ("a plate with no fork and knife", "a plate", ["fork", "knife"], [OBJ, OBJ]),
    ("a man without a hat or a scarf", "a man", ["hat", "scarf"], [OBJ, OBJ]),
    # a determiner or an -ed word after "and" starts an affirmed phrase; "with" then serves it
    ("a cup with no handle and chipped edges", "a cup with chipped edges", ["handle"], [OBJ]),
    ("a street with no cars and a single bus", "a street with a single bus", ["cars"], [OBJ]),
    ("a desk with no lamp and the chair is red", "a desk and the chair is red", ["lamp"], [OBJ]),
    # a noun with modifiers of its own after "and" is affirmed; a lone bare noun continues the list
    ("a street with no cars and beautiful tall houses", "a street with beautiful tall houses", ["cars"], [OBJ]),
    ("a park with no dogs and green trees", "a park with green trees", ["dogs"], [OBJ]),
    ("a beach with no people and white sand", "a beach with white sand", ["people"], [OBJ]),
    ("a sky with no clouds and bright stars", "a sky with bright stars", ["clouds"], [OBJ]),
    ("no dogs and green trees", "green trees", ["dogs"], [OBJ]),
    ("a lake without boats and tall reeds", "a lake with tall reeds", ["boats"], [OBJ]),
    ("a street with no cars, buses and tall houses", "a street with tall houses", ["cars", "buses"], [OBJ, OBJ]),
    ("a desk with no pens and papers on it", "a desk", ["pens", "papers"], [OBJ, OBJ]),
]

TYPES = [  # attributes, actions, relations, the world's referring forms
    ("the cup that is not red", "the cup", ["red cup"], [A]),
    ("a shirt that is not ironed", "a shirt", ["ironed shirt"], [A]),
    ("a not very tall tree", "a tree", ["very tall tree"], [A]),
    ("a red car, not a blue one", "a red car", ["blue car"], [A]),
    ("two mugs but no green mug", "two mugs", ["green mug"], [A]),
    ("a cup, but not the red one", "a cup", ["red cup"], [A]),
    ("not the red cup, the other cup", "the other cup", ["red cup"], [A]),
    ("the cup which isn't red", "the cup", ["red cup"], [A]),
    ("a dog not running", "a dog", ["running"], [V]),
    ("a dog not running in the park", "a dog in the park", ["running"], [V]),
    ("a girl not holding a balloon", "a girl", ["holding a balloon"], [V]),
    ("a cat not sitting on the mat", "a cat", ["sitting on the mat"], [V]),
    ("a man not looking at the camera", "a man", ["looking at the camera"], [V]),
    ("a dog that doesn't bark", "a dog", ["bark"], [V]),
    ("a dog that never barks", "a dog", ["barks"], [V]),
    ("the bird can't fly", "the bird", ["fly"], [V]),
    ("the man has not shaved", "the man", ["shaved"], [V]),
    ("a cat not on the sofa", "a cat", ["cat on the sofa"], [R]),
    ("a lamp not next to the bed", "a lamp", ["lamp next to the bed"], [R]),
    ("the bike is not in front of the house", "the bike", ["bike in front of the house"], [R]),
    ("a cat not on the sofa but on the floor", "a cat on the floor", ["cat on the sofa"], [R]),
]

CLAUSES = [  # copulas, "there is no", postfix cues, contractions, pronouns, contrast
    ("the dog is not brown", "the dog", ["brown dog"], [A]),
    ("the sky isn't cloudy", "the sky", ["cloudy sky"], [A]),
    ("the room is not very bright", "the room", ["very bright room"], [A]),
    ("the glass is not full of water", "the glass", ["full of water"], [A]),
    ("the shop is no longer open", "the shop", ["open shop"], [A]),
    ("a cat that isn't sleeping", "a cat", ["sleeping"], [V]),
    ("there is no milk in the fridge", "the fridge", ["milk"], [OBJ]),
    ("there aren't any chairs in the hall", "the hall", ["chairs"], [OBJ]),
    ("there's no bread on the counter", "the counter", ["bread"], [OBJ]),
    ("there is not a tree in sight", E, ["tree"], [OBJ]),
    ("a kitchen where there is no fork", "a kitchen", ["fork"], [OBJ]),
    ("the lamp is missing from the desk", "the desk", ["lamp"], [OBJ]),
    ("a bike with the front wheel missing", "a bike", ["front wheel"], [OBJ]),
    ("a bike missing a wheel", "a bike", ["wheel"], [OBJ]),
    ("a bike with a missing wheel", "a bike", ["wheel"], [OBJ]),
    ("The keys are missing.", E, ["keys"], [OBJ]),
    ("a car that doesn't have wheels", "a car", ["wheels"], [OBJ]),
    ("the fridge doesn't contain any eggs", "the fridge", ["eggs"], [OBJ]),
    ("a room that hasn't got a window", "a room", ["window"], [OBJ]),
    ("the table has no legs", "the table", ["legs"], [OBJ]),
    ("It is not a cat.", E, ["cat"], [OBJ]),
    # nobody / no one negate "people", nothing negates "objects"
    ("a tray with nothing on it", "a tray", ["objects"], [OBJ]),
    ("nobody on the bench", "the bench", ["people"], [OBJ]),
    ("a street with no one on it", "a street", ["people"], [OBJ]),
    # with something affirmed before it, the pronoun's place says where ("nothing on the counter"); opening
    # the caption, the place is what is affirmed; an -ing phrase or the rest of a relative clause go too
    ("a kitchen with nothing on the counter", "a kitchen", ["objects on the counter"], [OBJ]),
    ("a kitchen where there is nothing on the counter", "a kitchen", ["objects on the counter"], [OBJ]),
    ("a beach with nobody on the sand at sunset", "a beach at sunset", ["people on the sand"], [OBJ]),
    ("nothing is on the table", "the table", ["objects"], [OBJ]),
    ("a desk with nothing on top of it", "a desk", ["objects"], [OBJ]),
    ("a field with nobody around at dusk", "a field at dusk", ["people"], [OBJ]),
    ("a bench with nobody sitting on it", "a bench", ["people sitting on it"], [OBJ]),
    ("a pool with nobody swimming", "a pool", ["people swimming"], [OBJ]),
    ("a bed that nobody has slept in", "a bed", ["people"], [OBJ]),
    ("a room where nobody lives", "a room", ["people"], [OBJ]),
    ("nobody is here", E, ["people"], [OBJ]),
    # "never" before a verb negates the action; "has never" with an -ed verb too
    ("the man has never shaved", "the man", ["shaved"], [V]),
    # "not X but Y" keeps Y
    ("not a cat but a dog", "a dog", ["cat"], [OBJ]),
    ("a yard with no cats but two dogs", "a yard with two dogs", ["cats"], [OBJ]),
]

TABLE = SCOPE + LEXICALISED + QUANTIFIERS + TYPES + CLAUSES


def test_the_table_is_large_and_its_captions_distinct():
    assert len(TABLE) >= 60 and len({c[0] for c in TABLE}) == len(TABLE)


@pytest.mark.parametrize("text,affirmative,negated,types", TABLE, ids=[c[0] for c in TABLE])
def test_rule_splitter_table(text, affirmative, negated, types):
    s = split_negation(text)
    assert (s.affirmative, list(s.negated), list(s.negation_types)) == (affirmative, negated, types), s
    # the lexicon agrees with the splitter: a cue that names nothing is no cue
    assert has_negation_cue(text) == s.has_negation
    assert [c.text for c in s.concepts] == negated


# Where a cue's scope cannot be read, the caption stays whole and the split says why (`unsure`): the
# lexicon still sees the cue, the splitter declines to guess what it negates.
UNSURE = [
    # an exception to "nothing"/"nobody" is what is there; nothing absent can be named
    ("a room with nobody except a guard", "names what is there"),
    ("a hall with no one but the janitor", "names what is there"),
    ("there is nothing except dust", "names what is there"),
    ("a man not wearing anything except a hat", "after a negated action"),
    # "never" with a participle or "before"/"again" tells a history: nothing is absent from the picture
    ("never seen before: a purple cow", "tells a history"),
    ("a cow never seen before", "tells a history"),
    ("never before seen: a purple cow", "tells a history"),
    ("a bike that has never been ridden", "tells a history"),
    ("a car that was never washed", "tells a history"),
    ("a beach never visited again", "tells a history"),
    # a pronoun before what is neither a place, an -ing phrase, a filler nor a relative clause
    ("nothing compares to this view", "what it negates is unclear"),
    ("a cat that is nothing special", "what it negates is unclear"),
]


@pytest.mark.parametrize("text,reason", UNSURE, ids=[c[0] for c in UNSURE])
def test_unsure_captions_stay_whole_and_say_why(text, reason):
    s = split_negation(text)
    assert (s.affirmative, s.negated, s.has_negation, s.is_bare) == (text, (), False, False), s
    assert reason in (s.unsure or ""), s
    assert has_negation_cue(text)
    assert split_negation(TABLE[0][0]).unsure is None


def test_lexicalised_cues_and_custom_cue_lists():
    assert not has_negation_cue("a no entry sign") and find_cues("a no entry sign next to no cars") == ["no"]
    assert find_cues("a street with no cars, and it isn't raining") == ["no", "isn't"]
    assert cue_matcher()("a no parking zone") is False and cue_matcher()("a street with no cars")
    assert cue_matcher(NEGATION_CUES)("a no parking zone") is False  # eval_seg's default is the lexicon
    # a user's own list keeps plain whole-word matching, lexicalised or not
    plain = cue_matcher(["no"])
    assert plain("a no entry sign") and not plain("a nonstick pan") and not plain("nothing but sand")
    with pytest.raises(ValueError, match="at least one negation cue"):
        cue_matcher([" "])


# What the rules still read wrongly (the report lists them); strict, so a fix shows up as a pass.
KNOWN_WRONG = [
    ("a wall with no paintings hanging", "a wall", ["paintings hanging"]),  # -ing read as the wall's
    ("a street with no cars and people walking", "a street with people walking", ["cars"]),  # list read
    ("a man without a hat and a scarf", "a man", ["hat", "scarf"]),  # "and a scarf" read as affirmed
    ("a house with no windows that face the sea", "a house", ["windows that face the sea"]),
    ("a fruit bowl with everything but grapes", "a fruit bowl", ["grapes"]),  # "but" is not a cue
    ("a park where no dogs are allowed", "a park", ["dogs"]),
    ("not all the lights are on", "the lights", ["lights on"]),
]


@pytest.mark.xfail(strict=True, reason="a known limit of the rule splitter")
@pytest.mark.parametrize("text,affirmative,negated", KNOWN_WRONG, ids=[c[0] for c in KNOWN_WRONG])
def test_known_limits(text, affirmative, negated):
    s = split_negation(text)
    assert (s.affirmative, list(s.negated)) == (affirmative, negated)
