"""The world: determinism, oracle backends, pipelines on it, benchmark twins, and a short fine-tune."""

import json
import re

import numpy as np
import pytest
import torch

from negation_encoder.data import read_records
from negation_encoder.data.backends import RewriteRequest, TextLLM, VisionLLM
from negation_encoder.errors import InputError
from negation_encoder.eval import recall_at_k
from negation_encoder.splitting import has_negation_cue, split_negation
from negation_testbed.instruments.base_clip import BASE_DIR, corpus_negation_ratio, world_tokenizer
from negation_testbed.world import language as L
from negation_testbed.world.datagen import (
    WorldDistractors,
    caption_items,
    generate_negation_data,
    make_train_world,
    qa_items,
)
from negation_testbed.world.oracle import OracleLLM, OracleMLLM
from negation_testbed.world.scenes import COLOURS, OBJECTS, render, sample_scene
from negation_testbed.world.twins import (
    METRIC_KEYS,
    METRIC_LABELS,
    build_suite,
    negated_retrieval_scores,
    negated_validity,
)


def test_world_is_deterministic():
    a = [sample_scene(np.random.default_rng(3), f"s{i}") for i in range(1)]
    b = [sample_scene(np.random.default_rng(3), f"s{i}") for i in range(1)]
    assert a[0].to_dict() == b[0].to_dict()
    img1, masks1 = render(a[0])
    img2, _ = render(b[0])
    assert img1.shape == (32, 32, 3) and np.array_equal(img1, img2)
    assert set(masks1) == set(a[0].kinds) and all(m.any() for m in masks1.values())
    s1, s2 = build_suite(size=20), build_suite(size=20)
    assert [s.to_dict() for s in s1.scenes] == [s.to_dict() for s in s2.scenes]
    assert s1.mcq == s2.mcq


def _annotation_reader(suite, absent_weight: float):
    """Oracle embeddings built from scene annotations: one dimension per (kind, colour) and per kind.

    A query weighs its affirmed (kind, colour) dimensions +1 and its negated kind `absent_weight`:
    -3 reads the negation perfectly, +1 is a negation-blind reader (as CLIP: "not ... a plate" ~ "a
    plate"). A little seeded noise breaks the ties between equally good images, as a real encoder would.
    """
    pairs = {p: i for i, p in enumerate((k, c) for k in OBJECTS for c in COLOURS)}
    kinds = {k: len(pairs) + i for i, k in enumerate(OBJECTS)}
    dim = len(pairs) + len(kinds) + 8
    gen = torch.Generator().manual_seed(0)
    img = torch.zeros(len(suite.scenes), dim)
    for i, scene in enumerate(suite.scenes):
        for o in scene.objects:
            img[i, pairs[(o.kind, o.colour)]] = img[i, kinds[o.kind]] = 1.0
    img[:, -8:] = 0.01 * torch.randn(len(suite.scenes), 8, generator=gen)
    txt = torch.zeros(len(suite.negated), dim)
    for i, q in enumerate(suite.negated):
        for a in q.affirmed:
            txt[i, pairs[a]] = 1.0
        txt[i, kinds[q.absent]] = absent_weight
    txt[:, -8:] = 0.01 * torch.randn(len(suite.negated), 8, generator=gen)
    return torch.nn.functional.normalize(txt, dim=-1), torch.nn.functional.normalize(img, dim=-1)


def test_negated_retrieval_is_well_posed_for_a_perfect_reader():
    suite = build_suite(size=200)
    valid = negated_validity(suite)
    pos = {g: k for k, g in enumerate(suite.negated_gallery)}
    for i, q in enumerate(suite.negated):
        assert valid[i, pos[q.target]], q.text  # the target satisfies its query ...
        assert not any(valid[i, pos[g]] for g in q.group[1:]), q.text  # ... its counterfactuals never do
        assert len(q.group) == 11 and all(suite.scenes[g].has(q.absent) for g in q.group[1:])
    assert (valid.sum(1) > 5).any()  # queries that many gallery images satisfy: the old rule's trap
    txt, img = _annotation_reader(suite, absent_weight=-3.0)
    old = recall_at_k(txt, img[suite.negated_gallery], [pos[q.target] for q in suite.negated], ks=(5,))[5]
    scores = negated_retrieval_scores(txt @ img.T, suite)
    assert old < 0.95, old  # the target-only rule fails a perfect reader
    assert scores == {"retrieval_negated_r5": 1.0, "retrieval_negated_group_top1": 1.0}
    blind_txt, blind_img = _annotation_reader(suite, absent_weight=1.0)
    blind = negated_retrieval_scores(blind_txt @ blind_img.T, suite)
    assert blind["retrieval_negated_group_top1"] < 0.05 and blind["retrieval_negated_r5"] < 0.5, blind
    assert set(METRIC_LABELS) == set(METRIC_KEYS)


def test_oracles_implement_the_backend_protocols():
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng, f"s{i}") for i in range(300)]
    corpus = [L.affirmative_caption(s, rng) for s in scenes]
    llm = OracleLLM(corpus)
    mllm = OracleMLLM({s.id: s for s in scenes})
    assert isinstance(llm, TextLLM) and isinstance(mllm, VisionLLM)
    # plausible objects come from co-occurrence, never the mentioned ones: a kitchen caption -> kitchen objects
    props = llm.propose_objects(["a red cup and a blue fork"], 2)[0]
    assert set(props) <= {"plate", "bowl"}
    s = scenes[0]
    probs = mllm.presence_probability([s.id, s.id], [s.kinds[0], next(o for o in OBJECTS if not s.has(o))])
    assert probs == [1.0, 0.0]
    style = next(i for i in range(2560) if L.negation_forms(i)[0] == "{caption}, with no {concept}")
    neg, aff = llm.rewrite([RewriteRequest("a cup", "fork", "absence", style=style),
                            RewriteRequest("a cup", "fork", "affirm", style=style)])
    assert neg == "a cup, with no fork" and aff == "a cup, with a fork"  # a minimal pair, one frame


def test_pipelines_run_on_the_world_and_resume(tmp_path):
    world = make_train_world(tmp_path / "images", n_scenes=60)
    tok = world_tokenizer()
    res = generate_negation_data(world, tmp_path / "data", ("p1", "rand_p1", "p2", "presence"), tokenizer=tok,
                                 progress=False)
    for src, (path, stats) in res.items():
        recs = read_records(path)
        assert len(recs) == stats.records_written > 0, src
        for r in recs:
            scene = next(s for s in world.scenes if world.image_key(s) == r.image)
            if r.negation_type == "absence":
                assert not scene.has(r.negated_concept), f"{src}: negated a present object"
                assert any(c in r.negated_caption for c in L.TRAIN_CUES)
                assert not any(c in r.negated_caption for c in L.HELDOUT_CUES)
            if r.negation_type == "presence":
                assert scene.has(r.negated_concept)
            assert r.provenance["llm"] == "testbed-oracle-llm"
            assert "compositional" not in r.provenance  # opt-in (PipelineConfig.compositional)
    again = generate_negation_data(world, tmp_path / "data", ("p1",), tokenizer=tok, progress=False)
    assert again["p1"][1].records_written == 0 and again["p1"][1].items_skipped_done == 60
    assert len(caption_items(world)) == len(qa_items(world)) == 60


def test_world_distractors_differ_from_the_image_only_by_the_negated_concept(tmp_path):
    from PIL import Image

    from negation_encoder.data.pipelines import CaptionItem, DistractorSource
    from negation_encoder.data.validation import mentions

    world = make_train_world(tmp_path / "images", n_scenes=40)
    res = generate_negation_data(world, tmp_path / "data", ("p1",), tokenizer=world_tokenizer(), progress=False)
    recs = read_records(res["p1"][0])
    assert recs and all(r.provenance["distractor_source"] == "testbed-world-renderer" for r in recs)
    fresh = WorldDistractors(world)  # a second source, built from scratch: determinism
    assert isinstance(fresh, DistractorSource)
    scenes = {world.image_key(s): s for s in world.scenes}
    for r in recs:
        keys = r.distractor_images
        scene = scenes[r.image]
        assert len(keys) == 2 and r.image not in keys and len(set(keys)) == 2
        assert fresh.distractors(CaptionItem("x", r.image, r.caption), r.negated_concept, 2) == keys
        original = np.asarray(Image.open(world.image_root / r.image))
        for key in keys:
            twin = fresh.rendered[key]
            assert twin.has(r.negated_concept) and twin.objects[:-1] == scene.objects
            assert all(twin.has(k) for k in OBJECTS if mentions(r.caption, k) and k != r.negated_concept)
            pixels = np.asarray(Image.open(world.image_root / key))
            img, masks = render(twin)
            assert np.array_equal(pixels, img)
            changed = (pixels != original).any(-1)
            assert changed[masks[r.negated_concept]].any() and not changed[~masks[r.negated_concept]].any(), key


def test_p2_distractors_flip_the_answer_and_differ_only_at_the_asked_object(tmp_path):
    from PIL import Image

    from negation_encoder.data.pipelines import AnswerFlipSource, QAItem

    world = make_train_world(tmp_path / "images", n_scenes=60)
    res = generate_negation_data(world, tmp_path / "data", ("p2",), tokenizer=world_tokenizer(), progress=False)
    recs = read_records(res["p2"][0])
    scenes = {world.image_key(s): s for s in world.scenes}
    items = {it.image: it for it in qa_items(world)}
    fresh = WorldDistractors(world)
    assert isinstance(fresh, AnswerFlipSource)
    flipped = {"attribute": 0, "relation": 0}
    for r in recs:
        scene, item = scenes[r.image], items[r.image]
        kind, value = item.detail["kind"], item.detail["value"]
        keys = r.distractor_images or []
        taken = {o.cell for o in scene.objects if o.kind != kind}
        if r.negation_type == "relation" and value in taken:
            assert keys == [] and fresh.answer_flipped(item, 2) == []  # no free cell: no exact twin
            continue
        assert len(keys) == 1 and keys == fresh.answer_flipped(item, 2) and r.image not in keys
        twin = fresh.rendered[keys[0]]
        # the question the record negates is answered "yes" on the twin, and nothing else changed
        assert getattr(twin.get(kind), "colour" if r.negation_type == "attribute" else "cell") == value
        assert [o for o in twin.objects if o.kind != kind] == [o for o in scene.objects if o.kind != kind]
        original = np.asarray(Image.open(world.image_root / r.image))
        pixels = np.asarray(Image.open(world.image_root / keys[0]))
        _, before = render(scene)
        img, after = render(twin)
        assert np.array_equal(pixels, img)
        changed = (pixels != original).any(-1)
        where = before[kind] | after[kind]
        assert changed[where].any() and not changed[~where].any(), keys[0]
        flipped[r.negation_type] += 1
    assert flipped["attribute"] > 10 and flipped["relation"] > 3, flipped
    assert res["p2"][1].stages["distractor_images"] == sum(flipped.values())
    # a QA item the world cannot flip (an unknown colour) gets none
    odd = QAItem("x", recs[0].image, recs[0].caption, "Is it mauve?", "no", "attribute", "mauve",
                 {"kind": scenes[recs[0].image].objects[0].kind, "value": "mauve"})
    assert fresh.answer_flipped(odd, 1) == []


def test_compositional_foils_come_with_their_true_twins_in_one_frame(tmp_path):
    from negation_encoder.data.pipelines import _style

    world = make_train_world(tmp_path / "images", n_scenes=60)
    res = generate_negation_data(world, tmp_path / "data", ("p1",), tokenizer=world_tokenizer(), progress=False,
                                 distractors_per_record=0, compositional=True)
    scenes = {world.image_key(s): s for s in world.scenes}
    recs = read_records(res["p1"][0])
    pairs = [r for r in recs if "compositional" in r.provenance]
    assert len(pairs) == len(recs) > 0 and all(r.distractor_images is None for r in recs)
    for r in pairs:
        absent, present = r.provenance["compositional"]
        assert absent == r.negated_concept and r.provenance["compositional_prompt"] == "rewrite_compositional.oracle-v1"
        scene = scenes[r.image]
        assert not scene.has(absent) and scene.has(present)  # so "a N but no B" is false, "a B but no N" true
        frames = [f for f in L.COMPOSITIONAL_FORMS
                  if f.format(caption=r.caption, affirm=absent, negate=present) in r.hard_negatives
                  and f.format(caption=r.caption, affirm=present, negate=absent) in r.extra_positives]
        assert frames, (r.hard_negatives, r.extra_positives)  # foil and twin share one sentence frame
        neg, aff = L.negation_forms(_style(r.id.split(":")[1], absent))  # the pipeline's frame seed
        assert neg.format(caption=r.caption, concept=absent) == r.negated_caption
        assert aff.format(caption=r.caption, concept=absent) in r.hard_negatives  # the minimal foils stay
        assert neg.format(caption=r.caption, concept=present) in r.hard_negatives


def test_corpus_negation_ratio_like_table_1():
    # a sign's name ("no parking") is lexicalised, not negation: the one splitter's rule counts here too
    r = corpus_negation_ratio(["a dog", "a street with no cars", "a cat without a hat", "a no parking sign"])
    assert r["negation_captions"] == 2 and r["caption_ratio"] == 0.5
    assert r["negation_words"] == 2 and r["words"] == 16


def _record_texts(records) -> list[str]:
    """Every text a record puts in front of the trainer."""
    return [t for r in records for t in (r.caption, r.negated_caption, *r.hard_negatives,
                                         *(r.extra_positives or []))]


def test_benchmark_wording_never_overlaps_training_rewrites(tmp_path):
    suite = build_suite(size=50)
    kinds = OBJECTS
    training = {form.format(caption="", concept=k).strip(" ,").lower()
                for form in set(L.ABSENCE_FORMS + L.AFFIRM_FORMS) if "{caption}" not in form for k in kinds}
    world = make_train_world(tmp_path / "images", n_scenes=60)
    data = generate_negation_data(world, tmp_path / "data", ("p1", "rand_p1", "p2", "presence", "t2i"),
                                  tokenizer=world_tokenizer(), progress=False, compositional=True)
    finetune = [t.lower() for path, _ in data.values() for t in _record_texts(read_records(path))]
    assert len(finetune) > 300 and any(r.source == "t2i" for r in read_records(data["t2i"][0]))
    training |= {t.rstrip(".") for t in finetune}
    rng = np.random.default_rng(0)
    pretraining = {L.pretraining_caption(sample_scene(rng, f"p{i}"), rng, 0.03).lower() for i in range(3000)}
    probes = [t for _, c, f in suite.existence for t in (c, f)] + [t for _, ts, *_ in suite.mcq for t in ts]
    probes += [p for p, _, _ in suite.pairwise] + [q for q, _ in suite.negated_queries]
    for text in probes:
        assert text.lower().rstrip(".") not in training, text
        assert text.lower().rstrip(".") not in pretraining, text
    assert not any("feature" in t for t in training)  # NegBench's verb never appears in fine-tuning data
    for text in [*training, *finetune, *L.ABSENCE_FORMS]:  # no negated benchmark frame either
        assert not any(frame in text for frame in L.NEGATED_BENCHMARK_FRAMES), text
    # pretraining alt-text uses the benchmarks' verbs affirmatively, as LAION does, never negated
    for verb in ("features", "includes", "shows", "contains"):
        assert any(f" {verb} " in t and not has_negation_cue(t) for t in pretraining), verb
    assert not any(frame in t for t in pretraining for frame in L.NEGATED_BENCHMARK_FRAMES)
    for _, c, f in suite.heldout_existence + [(0, t, "") for _, ts, *_ in suite.heldout_mcq for t in ts]:
        assert not any(f" {cue} " in f" {c} {f} ".lower() for cue in L.TRAIN_CUES), (c, f)
    for form in L.ABSENCE_FORMS:
        assert not any(cue in form for cue in L.HELDOUT_CUES), form


def test_generator_prompt_records_are_true_for_their_scene_and_split_to_their_affirmative_part(tmp_path):
    """The t2i source: each negated prompt names present objects of its scene and negates an absent one,
    the splitter's affirmative part of it is the record's caption, and its foils are false."""
    from negation_testbed.world.datagen import make_t2i_prompt_data

    world = make_train_world(tmp_path / "images", n_scenes=80)
    path, stats = make_t2i_prompt_data(world, tmp_path / "t2i.jsonl")
    records = read_records(path)
    assert stats.records_written == len(records) == 80
    scenes = {world.image_key(s): s for s in world.scenes}
    assert len({r.negated_caption.split(" ")[0] for r in records}) > 1  # more than one frame
    for r in records:
        scene = scenes[r.image]
        assert not scene.has(r.negated_concept) and has_negation_cue(r.negated_caption)
        split = split_negation(r.negated_caption)
        assert split.affirmative == r.caption and split.negated == (r.negated_concept,), r.negated_caption
        affirmed, negates_present = r.hard_negatives
        assert r.negated_concept in affirmed and not has_negation_cue(affirmed)
        assert scene.has(split_negation(negates_present).negated[0])
        named = [k for k in OBJECTS if f" {k}" in f" {r.caption}"]
        assert named and all(scene.has(k) for k in named)
    again, stats2 = make_t2i_prompt_data(world, tmp_path / "t2i.jsonl")  # kept, not rewritten
    assert stats2.items_skipped_done == 80 and again.read_text() == path.read_text()


def test_every_world_text_is_in_the_closed_vocabulary():
    import re

    rng = np.random.default_rng(0)
    scene = sample_scene(rng, "v")
    texts = [L.pretraining_caption(scene, rng, 0.5) for _ in range(200)]
    texts += [f.format(caption="", concept="cup") for f in L.ABSENCE_FORMS + L.AFFIRM_FORMS]
    texts += [f.format(subject="a red cup and a plate", place="kitchen", neg="fork") for fs in L.TRAIN_T2I_FORMS
              for f in fs]
    suite = build_suite(size=20)
    texts += [t for _, c, f in suite.existence + suite.heldout_existence for t in (c, f)]
    texts += [t for _, ts, *_ in suite.mcq + suite.heldout_mcq for t in ts] + [q for q, _ in suite.negated_queries]
    vocab = set(L.WORLD_WORDS)
    for text in texts:
        words = set(re.findall(r"[a-z]+", text.lower())) - {"t"}
        assert words <= vocab, (text, words - vocab)


@pytest.mark.skipif(not (BASE_DIR / "model.safetensors").exists(), reason="committed base model missing")
def test_diagnosis_runs_and_finds_the_target_reachable(tmp_path):
    from negation_testbed.experiments.diagnose_retrieval import main

    out = tmp_path / "diag.json"
    assert main(["--quick", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    probe = res["presence_probe"]
    assert probe["object_balanced_accuracy_mean"] > 0.8  # presence is linearly decodable from the images
    assert res["free_embedding"]["train"]["group_top1"] > 0.9  # a free text vector can reach the target
    assert res["base"]["ranks"]["share_first"] < 0.2  # the blind base ranks the target low in its group
    assert res["base"]["metrics"]["retrieval_negated_group_top1"] == pytest.approx(res["base"]["ranks"]["share_first"])
    assert sum(res["base"]["ranks"]["histogram"]) == res["config"]["bench_size"]


@pytest.mark.skipif(not (BASE_DIR / "model.safetensors").exists(), reason="committed base model missing")
def test_base_is_negation_blind_and_short_finetune_reads_negation(tmp_path):
    from negation_testbed.demo import COLUMNS, run_demo

    # default recipe, shortened to keep the suite fast: 1500 scenes, 250 steps, 200 items per benchmark
    res = run_demo(tmp_path / "demo", n_scenes=1500, steps=250, bench_size=200, progress=False, drop_in=False)
    base, tuned = res["base"], res["finetuned"]
    assert set(COLUMNS) <= set(res) and set(res["base_split"]) == set(base)
    assert list(res["stage_seconds"]) == ["load", "world and data", "base benchmarks", "fine-tune and its benchmarks"]
    assert sum(res["stage_seconds"].values()) == pytest.approx(res["seconds"], abs=0.5)  # the stages cover the run
    assert base["retrieval_plain_r5"] > 0.9  # the committed base is good at affirmative retrieval ...
    assert base["mcq_negative"] < 0.1  # ... and blind to negation, as real CLIP is
    assert base["retrieval_negated_group_top1"] < 0.1 and base["retrieval_negated_r5"] < 0.2
    # what 250 steps of the default (with referring crops) teach: MCQ 0.435 -> 0.600, pairwise 0.0 -> 0.390;
    # existence 0.745 -> 0.700 (drop-in-1000, no crops: 0.810, pairwise 0.160): the crops slow existence early,
    # which catches up by the full 1000 steps (0.878 vs 0.880 on the validation twins, docs/testbed.md)
    assert tuned["mcq"] > base["mcq"] + 0.1
    assert tuned["pairwise"] > base["pairwise"] + 0.3
    assert tuned["existence"] > base["existence"] - 0.1
    assert tuned["zeroshot"] > base["zeroshot"] - 0.05
    assert res["base_split"]["mcq"] > base["mcq"]  # the training-free reader already helps a blind base
    # the fine-tuned reader is saved beside the checkpoint, which `negenc eval --split-scoring` reads
    from negation_encoder.split_scorer import SplitScorer

    saved = SplitScorer.load(res["checkpoint"])
    assert (saved.weight, saved.offset) == (res["split_weights"]["finetuned"]["weight"],
                                            res["split_weights"]["finetuned"]["offset"])
    assert saved.fit["items"] == res["split_weights"]["finetuned"]["items"]
    card = (tmp_path / "demo" / "run" / "model" / "README.md").read_text()
    assert "negation-encoder testbed world" in card and "/tmp" not in card
    assert (tmp_path / "demo" / "results.json").exists() and (tmp_path / "demo" / "report.png").exists()
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "## Targets" in report and "Verdict:" in report and "A weight of 0 means" in report
    from negation_testbed.demo import example_items, outcome

    assert example_items(500, 6, seed=0) == example_items(500, 6, seed=0) != example_items(500, 6, seed=1)
    assert outcome(True, False)[0] == "broken by fine-tuning" and outcome(False, True)[0] == "fixed by fine-tuning"
    with pytest.raises(InputError, match="already holds results .*pass --overwrite to replace it"):
        run_demo(tmp_path / "demo", n_scenes=60, steps=2, bench_size=20, progress=False, drop_in=False)


@pytest.mark.skipif(not (BASE_DIR / "model.safetensors").exists(), reason="committed base model missing")
def test_compare_runs_recipes_over_seeds_and_tabulates(tmp_path, capsys):
    from negation_encoder.cli import main

    assert main(["testbed", "compare", "--out", str(tmp_path), "--recipes", "negationclip,omni-front",
                 "--seeds", "0,1", "--steps", "3", "--scenes", "60", "--bench-size", "20", "--no-transfer",
                 "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert not re.search(r"\d+%\||it/s\]|s/it\]", printed.err), printed.err[-1500:]  # the loud twin: next test
    assert printed.out.count(" seed ") == 4  # one line per run
    res = json.loads((tmp_path / "compare.json").read_text())
    assert not any("transfer" in run for r in res["recipes"].values() for run in r["runs"])
    assert set(res["recipes"]) == {"negationclip", "omni-front"}
    assert all(len(r["runs"]) == 2 for r in res["recipes"].values())
    table = (tmp_path / "compare.md").read_text()
    assert "| negationclip |" in table and "| negationclip + split |" in table and "±" in table
    from negation_testbed.reports import compare_page

    assert table.strip() in compare_page(res)  # the results page prints the same table as compare.md
    assert "Transfer" not in table  # no transfer columns for runs that were not swapped in
    args = ["testbed", "compare", "--out", str(tmp_path), "--recipes", "negationclip", "--seeds", "1", "--steps", "3",
            "--scenes", "60", "--bench-size", "20", "--no-transfer", "--no-progress"]
    assert main(args) == 2  # the folder holds a comparison: refused without --resume or --overwrite
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0  # nothing left to train: the finished run is reused
    first = next(line for line in printed.out.splitlines() if line.startswith("negationclip") and " seed 1:" in line)
    assert f"{first} [finished earlier]" in capsys.readouterr().out.splitlines()
    assert main(["testbed", "compare", "--recipes", "nope"]) == 2


def test_compare_resume_adds_seeds_and_reuses_finished_runs(tmp_path, monkeypatch):
    """Resumed vs uninterrupted: seed 0, then --resume with seeds 0,1 trains only seed 1 and gives the
    numbers of one uninterrupted 0,1 comparison; an unfinished run continues from its checkpoint; other
    settings, a changed recipe, changed data, or resume and overwrite together are refused in one line."""
    import negation_testbed.compare as C
    import negation_testbed.recipes as RC
    from negation_encoder.errors import InputError

    trained = []
    real = C.run_recipe

    def counting(rec, **kw):
        trained.append((rec.name, kw["seed"], kw["resume"]))
        return real(rec, **kw)

    monkeypatch.setattr(C, "run_recipe", counting)
    kw = dict(n_scenes=60, steps=3, bench_size=20, transfer=False)
    C.compare(tmp_path / "a", ["negationclip"], seeds=(0,), **kw)
    with pytest.raises(InputError, match="--resume to continue"):
        C.compare(tmp_path / "a", ["negationclip"], seeds=(0, 1), **kw)
    resumed = C.compare(tmp_path / "a", ["negationclip"], seeds=(0, 1), resume=True, **kw)
    assert trained == [("negationclip", 0, False), ("negationclip", 1, False)]  # seed 0 reused
    whole = C.compare(tmp_path / "b", ["negationclip"], seeds=(0, 1), **kw)
    strip = lambda runs: [{k: v for k, v in r.items() if k != "seconds"} for r in runs]  # noqa: E731
    assert strip(resumed["recipes"]["negationclip"]["runs"]) == strip(whole["recipes"]["negationclip"]["runs"])
    assert resumed["base"] == whole["base"]
    # seed 1 killed after its training, before its numbers were saved: resumed from its last checkpoint
    (tmp_path / "a" / "runs" / "negationclip-seed1" / C.ENTRY).unlink()
    trained.clear()
    again = C.compare(tmp_path / "a", ["negationclip"], seeds=(0, 1), resume=True, **kw)
    assert trained == [("negationclip", 1, True)]
    assert strip(again["recipes"]["negationclip"]["runs"]) == strip(whole["recipes"]["negationclip"]["runs"])
    with pytest.raises(InputError, match=r"steps \(3 -> 4\)"):
        C.compare(tmp_path / "a", ["negationclip"], seeds=(0,), resume=True, **{**kw, "steps": 4})
    with pytest.raises(InputError, match="contradict"):
        C.compare(tmp_path / "a", ["negationclip"], seeds=(0,), resume=True, overwrite=True, **kw)
    changed = RC.Recipe(**{**RC.get_recipe("negationclip").__dict__, "config": {"objective": {"mcq": 9.0}}})
    monkeypatch.setitem(RC.RECIPES, "negationclip", changed)
    with pytest.raises(InputError, match="recipe 'negationclip' changed"):
        C.compare(tmp_path / "a", ["negationclip"], seeds=(0,), resume=True, **kw)
    monkeypatch.undo()  # the recipe as it was, and run_recipe unwrapped
    # another version of the data generation (here: a P2 record edited in place) is refused, not reused
    p2 = tmp_path / "a" / "world" / "data" / "p2.jsonl"
    real_generate = C.generate_negation_data

    def edited(*a, **k):
        out = real_generate(*a, **k)
        p2.write_text(p2.read_text().replace("not", "not ", 1))
        return out

    monkeypatch.setattr(C, "generate_negation_data", edited)
    with pytest.raises(InputError, match=r"seed0.*the data recipe 'negationclip' trains on changed"):
        C.compare(tmp_path / "a", ["negationclip"], seeds=(0,), resume=True, **kw)


@pytest.mark.skipif(not (BASE_DIR / "model.safetensors").exists(), reason="committed base model missing")
def test_compare_resume_refuses_other_instruments(tmp_path, monkeypatch):
    """The transfer numbers of a resumed comparison come from one generator, segmenter and judge: their
    bytes' hash is part of the saved settings, so resuming after one was retrained is refused in one line
    (and a comparison without transfer does not care)."""
    import negation_testbed.compare as C
    import negation_testbed.drop_in.measure as T
    from negation_encoder.errors import InputError
    from negation_encoder.training.checks import data_fingerprint

    a, b = tmp_path / "gen" / "a.bin", tmp_path / "seg" / "sub" / "b.json"
    for f, text in ((a, "weights"), (b, "{}")):
        f.parent.mkdir(parents=True)
        f.write_text(text)
    folders = (tmp_path / "gen", tmp_path / "seg")
    first = T.instruments_fingerprint(folders)
    assert first == data_fingerprint([str(a), str(b)]) == T.instruments_fingerprint(folders)
    a.write_text("retrained")
    assert T.instruments_fingerprint(folders) != first
    monkeypatch.setattr(C, "_compare", lambda *args: {})  # only the folder's settings matter here
    monkeypatch.setattr(T, "instruments_fingerprint", lambda: "generator-A")
    C.compare(tmp_path / "cmp", ["negationclip"], seeds=(0,))
    C.compare(tmp_path / "cmp", ["negationclip"], seeds=(0,), resume=True)
    monkeypatch.setattr(T, "instruments_fingerprint", lambda: "generator-B")
    with pytest.raises(InputError, match=r"instruments \('generator-A' -> 'generator-B'\)"):
        C.compare(tmp_path / "cmp", ["negationclip"], seeds=(0,), resume=True)
    C.compare(tmp_path / "plain", ["negationclip"], seeds=(0,), transfer=False)
    monkeypatch.setattr(T, "instruments_fingerprint", lambda: "generator-C")
    C.compare(tmp_path / "plain", ["negationclip"], seeds=(0,), transfer=False, resume=True)


def test_compare_transfer_columns_per_seed(tmp_path, capsys):
    """Each (recipe, seed) encoder is swapped into the frozen segmenter and generator; the arms that do not
    read the encoder (original, base, negative prompt) are the same for every run, the swapped ones are not."""
    from negation_testbed.compare import compare

    res = compare(tmp_path, ["negationclip"], seeds=(0, 1), n_scenes=60, steps=3, bench_size=20, progress=True,
                  transfer_settings={"seg_samples": 6, "t2i_prompts": 2, "seeds": (0,), "t2i_steps": 2})
    assert "compare: runs: 100%" in capsys.readouterr().err  # with progress, a bar over the runs
    runs = res["recipes"]["negationclip"]["runs"]
    for key in ("seg negated mIoU (original)", "Neg Score (base)", "Neg Score (negative prompt)",
                "control subject (base)"):
        assert runs[0]["transfer"][key] == runs[1]["transfer"][key], key
    assert {"seg negated mIoU (swapped)", "Neg Score (swapped)", "negated object (swapped)"} <= set(runs[0]["transfer"])
    assert (tmp_path / "runs" / "negationclip-seed1" / "drop_in" / "t2i" / "results.json").exists()
    table = (tmp_path / "compare.md").read_text()
    assert "Transfer" in table and "| negationclip | " in table.split("Transfer", 1)[1]
    from negation_testbed.reports import compare_page

    assert table.strip() in compare_page(res)  # the results page shows the transfer columns too


def test_referring_crop_records_are_true_for_their_crop_and_false_for_its_distractor(tmp_path):
    """The crops source: read off the rendered pixels by the rule-based reader (exact on renders), each
    record's own crop is its kind in the colour its expression keeps, its distractor the same kind in the
    colour it excludes; the expressions are the fine-tuning referring forms; a complete file is kept while
    the same wordings, size and seed built it."""
    from PIL import Image

    from negation_testbed.instruments.reader import read_image, reader_says_yes
    from negation_testbed.world.datagen import make_crop_data

    world = make_train_world(tmp_path / "images", n_scenes=5)
    path, stats = make_crop_data(world, tmp_path / "crops.jsonl", n_pairs=30)
    records = read_records(path)
    assert stats.records_written == len(records) == 60
    for r in records:
        kind = next(k for k in OBJECTS if r.caption.endswith(f" {k}"))
        colour = r.caption.split(" ")[1]
        assert r.negation_type == "attribute" and r.negated_concept != colour and r.source == "crops"
        assert r.negated_caption in {f.format(kind=kind, value=r.negated_concept) for f in L.FINE_TUNING_REFERRING_FORMS}
        own = read_image(Image.open(world.image_root / r.image))
        other = read_image(Image.open(world.image_root / r.distractor_images[0]))
        assert reader_says_yes(own, kind, colour) and not reader_says_yes(own, kind, r.negated_concept), r
        assert reader_says_yes(other, kind, r.negated_concept) and not reader_says_yes(other, kind, colour), r
    assert len({r.negated_caption.replace(r.negated_concept, "{v}") for r in records}) > 4  # forms and kinds vary
    again, stats2 = make_crop_data(world, tmp_path / "crops.jsonl", n_pairs=30)  # kept, not rewritten
    assert stats2.items_skipped_done == 30 and again.read_text() == path.read_text()
    # a file another version of the wordings built is rebuilt, not reused (its marker holds another key)
    done = path.with_name(path.name + ".done")
    done.write_text("")  # a marker that holds no key: no version of the wordings matches it
    built = path.read_text()
    path.write_text(built.replace("crop:0:0", "stale:0:0"))
    _, stats3 = make_crop_data(world, tmp_path / "crops.jsonl", n_pairs=30)
    assert stats3.items_skipped_done == 0 and stats3.records_written == 60
    assert path.read_text() == built  # rebuilt: the same records again
    _, stats4 = make_crop_data(world, tmp_path / "crops.jsonl", n_pairs=20)  # another size: rebuilt
    assert stats4.items_skipped_done == 0 and len(read_records(path)) == 40


def test_no_benchmark_image_is_a_training_image(tmp_path):
    """Training scenes, their counterfactual distractors, the referring crops and benchmark scenes (the pairwise
    twin's candidates are one-object scenes too) never coincide pixel for pixel."""
    import hashlib

    from PIL import Image

    world = make_train_world(tmp_path / "images", n_scenes=300)
    generate_negation_data(world, tmp_path / "data", ("p1", "crops"), tokenizer=world_tokenizer(), progress=False)
    train = {hashlib.sha1(np.asarray(Image.open(p)).tobytes()).hexdigest() for p in (tmp_path / "images").glob("*.png")}
    assert len(train) > 300 + 100  # training scenes, their distractors and the referring crops (50 pairs)
    suite = build_suite(size=60)
    bench = {hashlib.sha1(render(s)[0].tobytes()).hexdigest() for s in suite.scenes}
    assert not (train & bench)


def test_split_weight_is_fitted_on_training_records_only(tmp_path, monkeypatch):
    """The demo's split reader gets its weight from the world's training records and images, never from
    benchmark items: every image the fit embeds is a training image. The generator-prompt and referring-crop
    sources are not fitted on (a training-free route must not move with the fine-tuning recipe's data)."""
    import negation_encoder.split_scorer as split_mod
    from negation_encoder.testing import tiny
    from negation_testbed.run import split_evaluation
    from negation_testbed.world.datagen import make_crop_data

    world = make_train_world(tmp_path / "images", n_scenes=40)
    data = generate_negation_data(world, tmp_path / "data", ("p1", "presence", "t2i"), tokenizer=world_tokenizer(),
                                  progress=False)
    data["crops"] = make_crop_data(world, tmp_path / "data" / "crops.jsonl", n_pairs=10)
    seen: list[str] = []
    fit = split_mod.fit_split_weight_on_records

    def spy(model, tokenizer, processor, records, load_image, **kw):
        def load(key):
            seen.append(key)
            return load_image(key)

        return fit(model, tokenizer, processor, records, load, **kw)

    monkeypatch.setattr(split_mod, "fit_split_weight_on_records", spy)
    tok = world_tokenizer()
    model = tiny.build_clip_model(seed=0, tokenizer=tok, image_size=32, patch_size=16)
    suite = build_suite(size=10)
    metrics, scorer = split_evaluation(model, tok, tiny.build_clip_image_processor(32), suite,
                                       {s: p for s, (p, _) in data.items()}, world.image_root)
    train_keys = {world.image_key(s) for s in world.scenes}
    assert seen and set(seen) <= train_keys
    assert scorer.fit["items"] > 0 and set(metrics) >= {"mcq", "retrieval_negated_group_top1"}
    assert scorer.fit["data"] == ["p1.jsonl", "presence.jsonl"]
    with pytest.raises(ValueError, match="t2i"):
        split_evaluation(model, tok, tiny.build_clip_image_processor(32), suite, {"t2i": data["t2i"][0]},
                         world.image_root)


def test_training_and_evaluation_wordings_are_disjoint_for_the_drop_in():
    """What a segmentation-aware term or the split route is fitted on never uses a wording seg-compare
    scores (negated forms, and the control's affirmative form), nor any t2i-compare prompt form."""
    from negation_testbed.world.prompts import T2I_FORMS
    from negation_testbed.world.referring import CONTROL_REFERRING_FORMS

    assert set(L.TRAIN_REFERRING_FORMS) <= set(L.FINE_TUNING_REFERRING_FORMS)
    assert not set(L.FINE_TUNING_REFERRING_FORMS) & set(L.REFERRING_FORMS)
    assert not set(L.TRAIN_AFFIRMATIVE_REFERRING_FORMS) & set(CONTROL_REFERRING_FORMS)
    slots = {"kind": "cup", "value": "red", "colour": "red", "cell": "top left"}
    train = [f.format(**slots) for f in (*L.FINE_TUNING_REFERRING_FORMS, *L.TRAIN_AFFIRMATIVE_REFERRING_FORMS)]
    scored = [f.format(**slots) for f in (*L.REFERRING_FORMS, *CONTROL_REFERRING_FORMS)]
    for t in train:  # no evaluated phrase inside a training phrase, nor the other way round
        assert not any(s in t or t in s for s in scored), t
    t2i_forms = {f for forms in T2I_FORMS for f in forms if "{" in f}
    assert not t2i_forms & set(L.FINE_TUNING_REFERRING_FORMS)
    # generator prompts: no evaluated prompt (negated or control) inside a training prompt, for any slots
    assert not t2i_forms & {f for fs in L.TRAIN_T2I_FORMS for f in fs}
    evaluated = [f.format(place=p, colour=c, kind=k, neg=n) for f in t2i_forms for p in ("kitchen", "street")
                 for c in ("red", "blue") for k in ("cup", "car") for n in ("fork", "bike")]
    for neg_form, foil_form, aff_form in L.TRAIN_T2I_FORMS:
        for subject in ("a red cup", "a blue car", "a red cup and a blue plate"):
            for form in (neg_form, foil_form, aff_form):
                text = form.format(subject=subject, place="kitchen", neg="fork")
                assert not any(e in text for e in evaluated), text


def test_referring_training_records_name_the_excluded_object(tmp_path):
    """make_referring_data's records carry `other_mask`: the other object of the referred kind, disjoint from
    the referred one, and for a negated expression the object in the colour it excludes, and an `affirmative`
    naming the referent's own colour (both read off the pixels)."""
    from PIL import Image

    from negation_encoder.data.referring import read_referring
    from negation_testbed.world.datagen import make_referring_data
    from negation_testbed.world.scenes import COLOURS

    path = make_referring_data(tmp_path, n=12)
    records = read_referring(path)
    assert len(records) == 12 and sum(r.negated for r in records) == 6
    def colour(image, region):  # the palette colour nearest the region's median pixel (the renderer adds noise)
        med = np.median(image[region].astype(float), axis=0)
        return min(COLOURS, key=lambda name: float(((np.array(COLOURS[name]) - med) ** 2).sum()))

    for r in records:
        image = np.asarray(Image.open(tmp_path / r.image).convert("RGB"))
        target = np.asarray(Image.open(tmp_path / r.mask)) > 0
        other = np.asarray(Image.open(tmp_path / r.other_mask)) > 0
        assert target.any() and other.any() and not (target & other).any(), r.id
        if r.negated:
            excluded = next(c for c in COLOURS if c in r.text.split())
            assert colour(image, other) == excluded and colour(image, target) != excluded, r.text
            # the affirmative names the referent's own colour, read off the pixels, in a training form
            said = next(c for c in COLOURS if c in r.affirmative.split())
            assert said == colour(image, target) and r.affirmative.startswith("a "), r.affirmative
            assert r.affirmative.split()[2] in r.text.replace(",", "").split(), (r.affirmative, r.text)  # one kind
        else:
            assert r.affirmative is None
    assert make_referring_data(tmp_path, n=12) == path  # reused, not rewritten


@pytest.mark.parametrize("target", ["if", "sd", "sdxl", "clipseg"])
def test_a_recipe_for_a_target_trains_that_model_s_reading(target, tmp_path):
    """`negenc demo --target`: the recipe's pipeline group is the target model's reading (the SD-style world
    generator reads as SD 1.x, the SDXL-style one as SDXL's second slot); CLIPSeg reads no token states, so
    the states terms are left out instead of being refused; every other term is the recipe's own."""
    from negation_encoder.conditioning import reading
    from negation_testbed.recipes import STATES_TERMS, get_recipe

    rec = get_recipe("default")
    cfg = rec.for_target(target).to_config(base="b", data={s: tmp_path / f"{s}.jsonl" for s in rec.sources},
                                           images=tmp_path, out=tmp_path / "o", seg_data=tmp_path / "r.jsonl",
                                           seg_model=tmp_path / "seg")
    family = {"if": "if", "sd": "sd1", "sdxl": "sdxl", "clipseg": "clipseg"}[target]
    slot = "text_encoder_2" if target == "sdxl" else "text_encoder"
    assert cfg.pipeline.reading() == reading(family, slot)
    dropped = set(STATES_TERMS) if target == "clipseg" else set()
    added = {"omit_pooled", "preserve_pooled"} if target == "sdxl" else set()  # SDXL's slot 2 reads the pooled output
    assert set(cfg.enabled_terms()) == set(rec.config["objective"]) - dropped | added
    if added:
        omit = rec.config["objective"]["omit_states"]
        assert (cfg.objective["omit_pooled"].weight, cfg.objective["omit_pooled"].types) == (omit["weight"], omit["types"])
        assert cfg.objective["preserve_pooled"].weight == rec.config["objective"]["preserve_states"]
    assert rec.config["pipeline"] == {"family": "if"}, "for_target changed the registered recipe"
    assert "omit_pooled" not in rec.config["objective"], "for_target changed the registered recipe"


def test_demo_refuses_an_unknown_target_before_any_work(tmp_path, capsys):
    from negation_encoder.cli import main

    assert main(["demo", "--target", "sd3", "--out", str(tmp_path / "d")]) == 2
    assert "invalid choice: 'sd3'" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
