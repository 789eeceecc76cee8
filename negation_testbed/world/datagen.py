"""The fine-tuning source data of the world, and negation data from it through the real pipelines.

A training split of scenes with one affirmative caption each (the world's COCO), its images written
as PNG files (the trainer reads images from disk, as with real data), VQA-style questions answered
"no" from the scene graph (the world's VQAv2), then P1 / Rand-P1 / P2 / presence with the oracles.
Absence records get counterfactual distractor images rendered by `WorldDistractors`, and P2's attribute
and relation records the same scene with the question's answer made "yes".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from negation_encoder.data.pipelines import CaptionItem, PipelineConfig, PipelineStats, QAItem, run_pipeline
from negation_encoder.runio import atomic_save_image

from . import language as L
from .grammar import T2I_FRAMES, TRAIN_T2I_CONSTRUCTIONS
from .oracle import OracleLLM, OracleMLLM
from .scenes import (
    CELLS,
    COLOURS,
    OBJECTS,
    SIZES,
    THEME_PLACE,
    Scene,
    SceneObject,
    object_scene,
    render,
    sample_scene,
    with_changed,
    with_object,
)

TRAIN_SEED = 777


@dataclass
class TrainWorld:
    scenes: list[Scene]
    captions: list[str]
    image_root: Path

    def image_key(self, scene: Scene) -> str:
        return f"{scene.id}.png"


def make_train_world(root: str | Path, n_scenes: int = 1500, seed: int = TRAIN_SEED) -> TrainWorld:
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    scenes = [sample_scene(rng, f"train-{i:05d}") for i in range(n_scenes)]
    captions = [L.affirmative_caption(s, rng) for s in scenes]
    for s in scenes:
        path = root / f"{s.id}.png"
        if not path.exists():
            atomic_save_image(path, Image.fromarray(render(s)[0]))  # a kill never leaves a torn PNG to reuse
    return TrainWorld(scenes, captions, root)


@dataclass
class WorldDistractors:
    """The world's `DistractorSource` and `AnswerFlipSource`: the record's own scene re-rendered with the
    negated concept added (absence records) or with the asked attribute or relation made true (P2).

    The concept goes into a free cell with a colour and size drawn from a seed of (scene, concept), and
    is appended last under the scene's render seed (`scenes.with_object`), so each distractor differs
    from the original image only by containing the concept: every object the caption mentions keeps
    its cell, colour, size and pixels. PNGs are written next to the training images.
    """

    world: TrainWorld
    name: str = "testbed-world-renderer"
    rendered: dict[str, Scene] = field(default_factory=dict)  # image key -> the distractor's annotation

    def __post_init__(self) -> None:
        self._scenes = {self.world.image_key(s): s for s in self.world.scenes}

    def distractors(self, item: CaptionItem, concept: str, k: int) -> list[str]:
        scene = self._scenes.get(item.image)
        if scene is None or scene.has(concept) or concept not in OBJECTS:
            return []
        taken = {o.cell for o in scene.objects}
        options = [(cell, colour, size) for cell in CELLS if cell not in taken for colour in COLOURS for size in SIZES]
        seed = int(hashlib.sha1(f"{scene.id}|{concept}".encode()).hexdigest()[:8], 16)
        order = np.random.default_rng(seed).permutation(len(options))[:k]
        keys = []
        for j, o in enumerate(order):
            cell, colour, size = options[int(o)]
            keys.append(self._write(with_object(scene, SceneObject(concept, colour, size, cell),
                                                f"{scene.id}+{concept}-{j}")))
        return keys

    def answer_flipped(self, item: QAItem, k: int) -> list[str]:
        """The scene with the asked object in the asked colour or cell (`with_changed`): the one image
        that differs from the original only where "no" becomes "yes". One exists at most, whatever k;
        none when the asked cell is taken by another object."""
        scene = self._scenes.get(item.image)
        kind, value = item.detail.get("kind"), item.detail.get("value")
        if scene is None or k < 1 or kind is None or not scene.has(kind):
            return []
        if item.negation_type == "attribute" and value in COLOURS:
            change = {"colour": value}
        elif item.negation_type == "relation" and value in CELLS and value not in {o.cell for o in scene.objects}:
            change = {"cell": value}
        else:
            return []
        return [self._write(with_changed(scene, kind, f"{scene.id}~{kind}-{value.replace(' ', '-')}", **change))]

    def _write(self, twin: Scene) -> str:
        """Render the counterfactual next to the training images (once) and remember its annotation."""
        key = self.world.image_key(twin)
        path = self.world.image_root / key
        if not path.exists():
            atomic_save_image(path, Image.fromarray(render(twin)[0]))
        self.rendered[key] = twin
        return key


def caption_items(world: TrainWorld) -> list[CaptionItem]:
    return [CaptionItem(s.id, world.image_key(s), c, s.kinds) for s, c in zip(world.scenes, world.captions, strict=True)]


def qa_items(world: TrainWorld, seed: int = TRAIN_SEED) -> list[QAItem]:
    """One "no"-answered question per scene: a wrong colour or a wrong position of one object."""
    rng = np.random.default_rng(seed + 1)
    items = []
    for s, c in zip(world.scenes, world.captions, strict=True):
        obj = s.objects[int(rng.integers(len(s.objects)))]
        if rng.random() < 0.6:
            value = str(rng.choice([x for x in COLOURS if x != obj.colour]))
            q, typ = f"Is the {obj.kind} {value}?", "attribute"
        else:
            value = str(rng.choice([x for x in CELLS if x != obj.cell]))
            q, typ = f"Is the {obj.kind} on the {value}?", "relation"
        items.append(QAItem(f"{s.id}-q", world.image_key(s), c, q, "no", typ, value,
                            {"kind": obj.kind, "value": value}))
    return items


def generate_negation_data(world: TrainWorld, out_dir: str | Path, sources: tuple[str, ...] = ("p1", "p2", "presence"),
                           tokenizer=None, seed: int = 0, progress: bool = True,
                           distractors_per_record: int = 2,
                           compositional: bool = False) -> dict[str, tuple[Path, PipelineStats]]:
    """Run each pipeline on the world; returns {source: (jsonl path, stats)}. Resumable.

    Absence records carry `distractors_per_record` rendered counterfactuals (0: none) and P2's attribute and
    relation records their one answer-flipped scene (none with 0); `compositional`
    adds P1's compositional foils and their true twins (`PipelineConfig.compositional`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    llm = OracleLLM(world.captions)
    mllm = OracleMLLM({world.image_key(s): s for s in world.scenes})
    source = WorldDistractors(world) if distractors_per_record > 0 else None
    results = {}
    for src in sources:
        if src in T2I_SOURCES:  # written from the scene graph, not by a pipeline (make_t2i_prompt_data)
            results[src] = make_t2i_prompt_data(world, out_dir / f"{src}.jsonl", source=src)
            continue
        if src == CROPS_SOURCE:  # likewise (make_crop_data)
            results[src] = make_crop_data(world, out_dir / f"{src}.jsonl")
            continue
        cfg = PipelineConfig(pipeline=src, seed=seed, batch_size=128, categories=OBJECTS,
                             distractors_per_record=distractors_per_record, compositional=compositional)
        items = qa_items(world) if src == "p2" else caption_items(world)
        path = out_dir / f"{src}.jsonl"
        stats = run_pipeline(items, path, cfg, llm, mllm, tokenizer=tokenizer, progress=progress, distractors=source)
        results[src] = (path, stats)
    return results


T2I_SOURCE = "t2i"  # the generator-prompt source a recipe may list beside p1 / p2 / presence (eight frames)
T2I_GRAMMAR_SOURCE = "t2i-grammar"  # the same records in every named construction of the world's grammar
T2I_SOURCES = {T2I_SOURCE: T2I_FRAMES, T2I_GRAMMAR_SOURCE: TRAIN_T2I_CONSTRUCTIONS}


def _write_once(path: str | Path, source: str, n_items: int, build, key: str) -> tuple[Path, PipelineStats]:
    """The one rule of the sources written from the scene graph: a complete file (its `.done` marker beside
    it, holding the `key` that built it) is kept as it is; otherwise `build(stats)` makes the records, which
    are written, then marked done. `key` names what the records depend on besides the world (wordings,
    sizes, seeds): a file built by another key (another version of this code) is rebuilt, not reused."""
    import time

    from negation_encoder.data.records import write_records

    path = Path(path)
    stats = PipelineStats(source, items_total=n_items)
    done = path.with_name(path.name + ".done")
    key = hashlib.sha1(key.encode()).hexdigest()
    if path.exists() and done.exists() and done.read_text().strip() == key:
        stats.items_skipped_done = n_items
        return path, stats
    start = time.perf_counter()
    stats.records_written = write_records(path, build(stats))
    stats.items_processed = n_items
    stats.seconds = time.perf_counter() - start
    done.write_text(key + "\n")
    return path, stats


def make_t2i_prompt_data(world: TrainWorld, path: str | Path, seed: int = TRAIN_SEED, source: str = T2I_SOURCE
                         ) -> tuple[Path, PipelineStats]:
    """NegationRecords in the words people give a generator (`T2I_SOURCES[source]`: the eight frames of
    `grammar.T2I_FRAMES` for `t2i`, every construction of `grammar.TRAIN_T2I_CONSTRUCTIONS` for
    `t2i-grammar`; the construction named in each record's provenance), one per training scene: one or two of its objects and its place, negating an object of the same theme that the scene
    lacks ("a kitchen that has a red cup but no fork"). Foils: the negated object affirmed, and the same frame
    negating a present object; the frame affirming another present object is an extra positive.

    Why a source of its own: a frozen generator is handed short prompts, not alt-text with a clause
    appended, and the world's CLIP learns "drop what is negated" per sentence frame (`omit_states` fitted on
    P1's frames leaves these prompts' states where the base had them). Written from the scene graph, as the
    oracles answer from it; with real data this is `negenc generate t2i` (`negation_encoder.data.t2i`).
    Deterministic; an existing complete file is kept while the same wordings and seed built it."""
    from negation_encoder.data.records import NegationRecord

    from .scenes import THEMES

    constructions = T2I_SOURCES[source]

    def build(stats: PipelineStats) -> list:
        rng = np.random.default_rng(seed + 3)
        records = []
        for scene in world.scenes:
            kinds = set(scene.kinds)
            absent = [k for k in THEMES[scene.theme] if k not in kinds] or [k for k in OBJECTS if k not in kinds]
            construction = constructions[int(rng.integers(len(constructions)))]
            neg_form, foil_form, aff_form = construction.negated, construction.foil, construction.affirmative
            order = rng.permutation(len(scene.objects))
            n_subject = 1 if len(scene.objects) == 1 or rng.random() < 0.6 else 2
            named = [scene.objects[i] for i in order[:n_subject]]
            others = [scene.objects[i].kind for i in order[n_subject:] if scene.objects[i].kind not in
                      {o.kind for o in named}]
            slots = {"subject": L.join([L.phrase(o, rng) for o in named]), "place": THEME_PLACE[scene.theme],
                     "neg": str(rng.choice(absent))}
            stats.stages["scenes"] += 1
            rec = NegationRecord(
                f"t2i:{scene.id}:{slots['neg']}", world.image_key(scene), aff_form.format(**slots),
                neg_form.format(**slots), "absence", slots["neg"], source,
                hard_negatives=[foil_form.format(**slots), neg_form.format(**{**slots, "neg": named[0].kind})],
                provenance={"pipeline": source, "forms": "grammar." + ("T2I_FRAMES" if source == T2I_SOURCE
                                                                      else "TRAIN_T2I_CONSTRUCTIONS"),
                            "construction": construction.name, "truth": "scene graph"},
                extra={"extra_positives": [foil_form.format(**{**slots, "neg": others[0]})]} if others else {})
            records.append(rec)
        return records

    return _write_once(path, source, len(world.scenes), build, repr((constructions, seed, len(world.scenes))))


CROPS_SOURCE = "crops"  # referring expressions against crops of two objects of one kind (make_crop_data)
FINE_TUNING_ONLY_SOURCES = (*T2I_SOURCES, CROPS_SOURCE)  # what a recipe may add; the split reader is never fitted on them
CROPS_SEED = 4242
CROPS_PER_SCENES = 6  # training scenes per referring-crop pair


def make_crop_data(world: TrainWorld, path: str | Path, n_pairs: int | None = None, seed: int = CROPS_SEED
                   ) -> tuple[Path, PipelineStats]:
    """NegationRecords in NegRefCOCOg's format, on new training crops: two objects of one kind in two
    colours, each alone in its image (the world's stand-in for a referring box cropped out of a photo,
    as the pairwise benchmark twin crops its candidates), and for each a negated referring expression
    true for it ("the cup that isn't red") in the fine-tuning referring forms
    (`language.FINE_TUNING_REFERRING_FORMS`, disjoint from the evaluated ones), with the other crop as its
    `distractor_images`. Caption: "a blue cup".

    Why: an encoder fine-tuned on alt-text negations still reads "red" in "the cup that is not red" as a
    reason to pick the red cup (below chance on every evaluated form, docs/testbed.md); these records put
    exactly that choice, text against two crops, into the counterfactual-image term. On real data the
    same records come from RefCOCOg's train split (boxes cropped, expressions negated by an LLM), never
    the evaluation subset. Crop images are written next to the training images (`crop-*.png`, from their
    own seed: no benchmark or training scene repeats). `n_pairs` defaults to one pair per 6 training scenes
    (1000 for the demo's 6000, the share chosen on the validation sets: 2000 lowered existence), so a smaller
    world is not swamped by crops. Deterministic; an existing complete file is kept while the same wordings,
    size and seed built it."""
    from negation_encoder.data.records import NegationRecord

    n_pairs = max(1, len(world.scenes) // CROPS_PER_SCENES) if n_pairs is None else n_pairs

    def build(stats: PipelineStats) -> list:
        rng = np.random.default_rng(seed)
        colours = list(COLOURS)
        records = []
        for i in range(n_pairs):
            kind = str(rng.choice(OBJECTS))
            pair = [str(c) for c in rng.choice(colours, size=2, replace=False)]
            keys = []
            for j, colour in enumerate(pair):
                scene = object_scene(rng, f"crop-{i}-{j}", SceneObject(kind, colour, str(rng.choice(SIZES)),
                                                                       str(rng.choice(CELLS))))
                keys.append(f"crop-{i:05d}-{j}.png")
                target = world.image_root / keys[-1]
                if not target.exists():
                    atomic_save_image(target, Image.fromarray(render(scene)[0]))
            for j, colour in enumerate(pair):
                other = pair[1 - j]
                form = L.FINE_TUNING_REFERRING_FORMS[int(rng.integers(len(L.FINE_TUNING_REFERRING_FORMS)))]
                records.append(NegationRecord(
                    f"crop:{i}:{j}", keys[j], L.TRAIN_AFFIRMATIVE_REFERRING_FORMS[0].format(colour=colour, kind=kind),
                    form.format(kind=kind, value=other), "attribute", other, CROPS_SOURCE,
                    provenance={"pipeline": CROPS_SOURCE, "forms": "language.FINE_TUNING_REFERRING_FORMS",
                                "truth": "scene graph"},
                    extra={"distractor_images": [keys[1 - j]]}))
            stats.stages["pairs"] += 1
        return records

    return _write_once(path, CROPS_SOURCE, n_pairs, build, repr((L.FINE_TUNING_REFERRING_FORMS,
                                                                 L.TRAIN_AFFIRMATIVE_REFERRING_FORMS[0], n_pairs, seed)))


REFERRING_SEED = 2000  # training scenes for seg_loss; seg-compare draws its sets from seed 0, the route fit from 1000


def make_referring_data(out_dir: str | Path, n: int = 2000, seed: int = REFERRING_SEED) -> Path:
    """ReferringRecords for the segmentation-aware term, on TRAINING scenes: half negated with the training
    referring forms (`language.FINE_TUNING_REFERRING_FORMS`, disjoint from the evaluated ones), half affirmative
    (`language.TRAIN_AFFIRMATIVE_REFERRING_FORMS`: "a blue cup", "a blue cup on the top left"; never the
    control's "the blue cup"), so the term teaches exclusion without unlearning plain reference. Each record
    names the other object of the referred kind (`other_mask`: the one a negated expression excludes), which
    seg_loss's object-choice part reads, and each negated record its referent in a training affirmative form
    (`affirmative`: "a blue cup" for "the cup that isn't red"), seg_affirm's target. Deterministic; an
    existing file for the same (n, seed) is reused."""
    from negation_encoder.data.referring import ReferringRecord, write_referring

    from .referring import affirmative_phrase, referring_pairs, referring_samples

    out_dir = Path(out_dir)
    wording = hashlib.sha1(repr((L.FINE_TUNING_REFERRING_FORMS, L.TRAIN_AFFIRMATIVE_REFERRING_FORMS, "other_mask",
                                 "affirmative")).encode()).hexdigest()[:8]
    path = out_dir / f"referring-{n}-{seed}-{wording}.jsonl"  # another wording or size: another file
    if path.exists():
        return path
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for negated in (True, False):
        tag = "neg" if negated else "aff"
        args = (n // 2, seed + int(negated), L.FINE_TUNING_REFERRING_FORMS, f"seg-{tag}")
        samples = referring_samples(*args[:2], negated, *args[2:], affirm_forms=L.TRAIN_AFFIRMATIVE_REFERRING_FORMS)
        pairs = referring_pairs(*args)  # the same draw: the scenes and targets behind `samples`
        for i, ((image, text, target, other), (scene, t, _, _)) in enumerate(zip(samples, pairs, strict=True)):
            key = f"{tag}-{i:05d}"
            Image.fromarray(image).save(out_dir / f"{key}.png")
            Image.fromarray(target.astype(np.uint8) * 255).save(out_dir / f"{key}_mask.png")
            Image.fromarray(other.astype(np.uint8) * 255).save(out_dir / f"{key}_other.png")
            # a negated expression's referent said without negation, as the affirmative half says it (seg_affirm)
            affirm = affirmative_phrase(scene.objects[t], i, L.TRAIN_AFFIRMATIVE_REFERRING_FORMS) if negated else None
            records.append(ReferringRecord(key, f"{key}.png", text, f"{key}_mask.png", other_mask=f"{key}_other.png",
                                           negated=negated, affirmative=affirm))
    write_referring(path, records)
    return path
