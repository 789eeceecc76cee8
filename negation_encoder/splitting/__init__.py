"""Negation cues and the negation splitter: one package for every "does this text negate, and what?".

The cue lexicon (`NEGATION_CUES`, `find_cues`, `has_negation_cue`, `cue_matcher`) is what data
validation, eval_seg's negation subset and the testbed's corpus statistics check; the splitter turns a
caption into its affirmative part and its negated concepts. Nothing else in the codebase lists cues.

Training-free rivals of a negation-aware encoder (SpaceVLM's split scoring; LLM-grounded Diffusion's
and NPC's negative prompts) all start by splitting "a street with no cars" into "a street" and
["cars"]. The split scorer, the text-to-image negative-prompt arm, the integrations' routes and the
trainer's loss eligibility import this package, so every route reads a caption the same way.

Modules: `cues` (the lexicon and the lexicalised-negation rule), `types` (`NegationSplit`,
`NegatedConcept`), `tokens` (the tokeniser and word classes both read), `scope` (cue kinds and the
phrase readers a scope is built from), `rules` (`RuleSplitter`: the readers per cue kind, the
affirmative part), `llm` (`LLMSplitter`, its prompt version and answer parsing). Import from the package.

Lexicalised negation is not negation, for the lexicon and the splitter alike (one function decides):
signs and names ("a no entry sign", "a no parking zone", "a not-for-sale tag", a capitalised "No" inside
a title, anything quoted or after "says"/"reads"), fixed phrases ("nothing but sand", "not only", "not
just"), comparatives, which bound a number or a degree ("no more than two cups", "no fewer than",
"nothing less than", "a dog no bigger than a cat"), and "non-"/"un-" words (never cues: the lexicon
matches whole words). `cue_matcher(custom_cues)` keeps plain whole-word matching: a user's own list
means exactly its words.

`RuleSplitter`'s scope rules (each negation removes a span of the caption and names concepts):

- a determiner cue ("no", "nor"), a preposition cue ("without", "lacking", "free of", "devoid of") and
  "there is no" negate one noun phrase, or a list of them ("no cars, buses or bikes", "neither X nor
  Y", "no cars and buses": a lone bare noun after "and" continues the list); after "and", a determiner
  ("and a bus") or a noun with modifiers of its own ("and green trees", "and beautiful tall houses")
  starts an affirmed phrase;
- the noun phrase keeps "of", "with", "for" and "to" complements ("no cup of tea") and ends before
  whatever follows it: a place, time or manner modifier ("at sunset", "on the table", "riding a bike",
  "slowly", "today"), a relative clause or a new clause. What follows stays in the affirmative part: it
  is read as describing the affirmed subject ("a boy without a hat riding a bike" -> "a boy riding a
  bike"). When the negation opened the sentence, a left-over leading preposition goes, so the place
  becomes the affirmed subject ("neither a fork nor a knife on the plate" -> "the plate");
- scene fillers after a negated phrase ("here", "at all", "in sight", "in the picture", "on it") go with
  the negation; so do the connectors that only served it ("with", "and", "that does", ", but");
- "not"/"n't"/"never" read what follows: a determiner -> an object ("not a cat"); a preposition -> a
  relation, named with its subject ("a cat not on the sofa" -> "cat on the sofa"), because "on the sofa"
  alone names nothing a negative prompt or a concept embedding could use; a verb ("not running",
  "doesn't bark") -> an action, the verb phrase alone ("wearing a hat"), as Neg Score questions ask it
  of the subject; an adjective ("the cup that is not red", "the dog isn't brown", "a not white cat")
  -> an attribute, named with its noun ("red cup") for the same reason as relations. "never" before a
  participle or "before"/"again" ("never seen before: a purple cow", "a bike that has never been
  ridden") tells a history, not an absence: the caption is left whole;
- a negated noun phrase whose head noun the affirmative part also names is an attribute negation
  ("a cup, but not the red one" -> "red cup"; "not the red cup, the other cup"): the thing is there,
  one of its kinds is not;
- "except": "everything"/"all"/"anything" before it affirms nothing depictable and goes with the
  negation ("a fruit bowl with everything except grapes" -> "a fruit bowl", ["grapes"]); a real noun
  phrase stays ("all the chairs except the red one" -> "all the chairs", ["red chairs"]);
- an exception to a negated object ("except", "except for", "apart from", "aside from", "other than",
  "besides") is there: the marker goes and the excepted phrase is affirmed on the connector the negation
  took ("a room with no furniture apart from a bed" -> "a room with a bed", "a shelf that has no books
  except a dictionary" -> "a shelf that has a dictionary"), else on "with" said for the cue ("a room
  without any furniture except a chair" -> "a room with a chair", ["furniture"]). An exception to
  "nothing"/"nobody"/"no one" (with "but" too: "a hall with no one but the janitor") or to a negated
  action, attribute or relation names what is there and nothing absent: the caption is left whole;
- "none of the X are P" affirms the X and negates P of them; "none of the X" alone negates the X;
- "nobody"/"no one" negate "people", "nothing" negates "objects", with what follows them: a filler
  ("a tray with nothing on it"); a place, which says where when something is affirmed before ("a
  kitchen with nothing on the counter" -> "a kitchen", ["objects on the counter"]) and is the affirmed
  place when the negation opens the sentence ("nothing is on the table" -> "the table"); an -ing phrase
  ("a bench with nobody sitting on it" -> ["people sitting on it"]); the rest of a relative clause ("a
  bed that nobody has slept in" -> "a bed"). Before anything else ("nothing compares to this view") the
  caption is left whole;
- postfix cues ("X is missing", "with the X missing", "X is absent from ...") negate the phrase before
  them; "from PLACE" names the affirmed place when the negation opened the sentence ("A chair is missing
  from this room" -> "this room"), and goes with the negation otherwise;
- "not X but Y" keeps Y and drops the "but" ("not a cat but a dog" -> "a dog", "a yard with no cats but
  two dogs" -> "a yard with two dogs"); so does "and" before a verbless phrase when the negation took a
  "with" ("a cup with no handle and chipped edges" -> "a cup with chipped edges", "a park with no dogs
  and green trees" -> "a park with green trees"); after "without", a determiner-less phrase is affirmed
  with "with" said for the cue ("a lake without boats and tall reeds" -> "a lake with tall reeds").

A caption that affirms nothing ("there is no dog", "a photo with no fork here") has the affirmative
part `EMPTY_AFFIRMATIVE`; the trainer reads `has_negation and affirmative == EMPTY_AFFIRMATIVE` as a
bare negation (`NegationSplit.is_bare`).

Where a cue's scope cannot be read, the rule splitter leaves the caption whole rather than guess, and
says why in `NegationSplit.unsure`: such a split negates nothing, so the negative-prompt routes, split
scoring and the trainer's eligibility all read the text as written.

`LLMSplitter` asks a chat model through the data pipelines' backends (versioned prompt, JSON answer,
the same `NegationSplit` with types) and falls back to the rules when the answer is malformed, counting
how often.
"""

from .cues import NEGATION_CUES, cue_matcher, find_cues, has_negation_cue
from .llm import LLM_PROMPT_VERSION, LLMSplitter, parse_split_answer
from .rules import RuleSplitter, split_negation
from .types import EMPTY_AFFIRMATIVE, NegatedConcept, NegationSplit

__all__ = [
    "EMPTY_AFFIRMATIVE", "LLM_PROMPT_VERSION", "NEGATION_CUES", "LLMSplitter", "NegatedConcept", "NegationSplit",
    "RuleSplitter", "cue_matcher", "find_cues", "has_negation_cue", "parse_split_answer", "split_negation",
]
