"""The drop-in on the world: committed judge, segmenter and generator; the two comparisons."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from negation_encoder.cli import main
from negation_testbed.instruments.base_clip import BASE_DIR
from negation_testbed.instruments.generator import T2I_DIR, base_text_encoder
from negation_testbed.instruments.judge import JUDGE_DIR, WorldJudge
from negation_testbed.instruments.segmenter import SEG_DIR
from negation_testbed.world.scenes import OBJECTS, render, sample_scene


@pytest.fixture(scope="module")
def base_encoder_folder(tmp_path_factory):
    """The base CLIP exported as a checkpoint folder: swapping it in must change nothing."""
    from transformers import CLIPModel

    from negation_encoder.checkpoint.export import export_checkpoint
    from negation_testbed.instruments.base_clip import world_image_processor, world_tokenizer

    out = tmp_path_factory.mktemp("enc") / "model"
    export_checkpoint(CLIPModel.from_pretrained(BASE_DIR), world_tokenizer(), world_image_processor(), out)
    return str(out)


def _perturbed_clip(seed: int = 0):
    """The base CLIP with its text tower nudged: a swap that must change what the frozen models produce."""
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(BASE_DIR)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in list(clip.text_model.parameters()) + list(clip.text_projection.parameters()):
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return clip


@pytest.fixture(scope="module")
def other_encoder_folder(tmp_path_factory):
    from negation_encoder.checkpoint.export import export_checkpoint
    from negation_testbed.instruments.base_clip import world_image_processor, world_tokenizer

    out = tmp_path_factory.mktemp("enc2") / "model"
    export_checkpoint(_perturbed_clip(), world_tokenizer(), world_image_processor(), out)
    return str(out)


def test_judge_follows_protocol_and_reads_rendered_scenes():
    from eval_t2i.judges import Judge

    judge = WorldJudge.from_pretrained(JUDGE_DIR)
    assert isinstance(judge, Judge)
    rng = np.random.default_rng(7)
    images, questions, truth, colour_qs = [], [], [], []
    for i in range(6):
        scene = sample_scene(rng, f"t{i}")
        image = render(scene)[0]
        absent = next(k for k in OBJECTS if not scene.has(k))
        obj = scene.objects[0]
        colour_qs.append((image, f"What colour is the {obj.kind}?", obj.colour))
        for q, t in ((f"Is there a {obj.kind}?", True), (f"Is there a {absent}?", False),
                     (f"Is there a {obj.colour} {obj.kind}?", True)):
            images.append(image)
            questions.append(q)
            truth.append(t)
    probs = judge.yes_probability(images, questions)
    wrong = [(q, p) for q, p, t in zip(questions, probs, truth, strict=True) if (p > 0.5) != t]
    assert not wrong, f"the committed judge answered wrongly: {wrong}"
    choices = [["red", "green", "blue", "yellow", "purple", "white"]] * len(colour_qs)
    scores = judge.choice_likelihood([c[0] for c in colour_qs], [c[1] for c in colour_qs], choices)
    picked = [choices[0][int(np.argmax(s))] for s in scores]
    assert picked == [c[2] for c in colour_qs], f"colour answers {picked}"


def test_judge_rejects_unreadable_questions():
    judge = WorldJudge.from_pretrained(JUDGE_DIR)
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="cannot read 'Is the sky blue\\?'"):
        judge.yes_probability([image], ["Is the sky blue?"])
    with pytest.raises(ValueError, match="1 images, 2 questions"):
        judge.yes_probability([image], ["Is there a cup?", "Is there a fork?"])


def test_segmenter_loads_and_base_swap_is_bit_identical():
    from transformers import CLIPModel, CLIPSegForImageSegmentation, CLIPSegProcessor

    from integrations import swap_clipseg_text_encoder

    seg = CLIPSegForImageSegmentation.from_pretrained(SEG_DIR).eval()
    processor = CLIPSegProcessor.from_pretrained(SEG_DIR)
    image = render(sample_scene(np.random.default_rng(3), "s"))[0]
    enc = processor(text=["the red cup", "the cup that is not red"], images=[image, image], padding=True,
                    return_tensors="pt")
    with torch.no_grad():
        before = seg(**enc).logits
        swap_clipseg_text_encoder(seg, CLIPModel.from_pretrained(BASE_DIR))
        after = seg(**enc).logits
        swap_clipseg_text_encoder(seg, _perturbed_clip())
        other = seg(**enc).logits
    assert before.shape[-2:] == (32, 32)
    assert torch.equal(before, after), f"swapping the base encoder changed logits by {(before - after).abs().max()}"
    assert (other - before).abs().max() > 1e-2, "swapping a different encoder changed nothing: the swap is a no-op"


def test_generator_loads_and_base_swap_is_bit_identical():
    from diffusers import DiffusionPipeline

    from integrations import swap_text_encoders

    pipe = DiffusionPipeline.from_pretrained(str(T2I_DIR), safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size == 64

    def draw():
        return pipe(prompt=["a kitchen with a red cup and no fork"], negative_prompt=[""], num_inference_steps=2,
                    generator=[torch.Generator().manual_seed(0)], output_type="np").images

    before = draw()
    swap_text_encoders(pipe, text_encoder=base_text_encoder())
    after = draw()
    other_te = base_text_encoder()
    other_te.load_state_dict(_perturbed_clip().text_model.state_dict())
    swap_text_encoders(pipe, text_encoder=other_te)
    other = draw()
    assert before.shape == (1, 32, 32, 3)
    assert np.array_equal(before, after), "swapping the base encoder into the world pipeline changed the image"
    assert np.abs(other - before).max() > 1e-3, "swapping a different encoder changed nothing: the swap is a no-op"


def test_t2i_compare_two_encoders_through_the_real_runner(tmp_path, base_encoder_folder, other_encoder_folder):
    """Two encoders on one pipeline: each gets its own swapped arms; the base encoder's arm reproduces the
    base arm image for image, the other encoder's does not."""
    top = tmp_path / "t2i"
    code = main(["testbed", "t2i-compare", "--encoder", base_encoder_folder, "--encoder", other_encoder_folder,
                 "--limit", "2", "--seeds", "0,1", "--steps", "2", "--batch-size", "4", "--out", str(top),
                 "--generator", "if", "--no-progress"])
    assert code == 0
    whole = json.loads((top / "results.json").read_text())
    assert set(whole["generators"]) == {"if"} and whole["encoders"] == {"e1": base_encoder_folder, "e2": other_encoder_folder}
    res, out = whole["generators"]["if"], top / "if"
    assert res["pipeline_class"] == "IFPipeline"
    assert set(res["negated"]) == {"base", "base+negprompt", "omit", "swapped-e1", "swapped-e1+negprompt",
                                   "swapped-e2", "swapped-e2+negprompt"}
    for arm in res["negated"].values():  # the rates beside Neg Score, from the same judge answers
        assert arm["neg_score"] <= arm["subject_rate"] and arm["neg_score"] <= 1 - arm["negated_rate"]
    assert res["control"]["base"]["negated_rate"] is None
    # the judge checked against the rule-based reader on every (image, question) of the run
    audited = sum(t["subject"]["n"] for arms in res["audit"].values() for t in arms.values())
    assert audited == 7 * 4 + 3 * 4  # negated: 7 arms x 2 prompts x 2 seeds; control: 3 arms x 4
    assert set(res["judge_agreement"]) == {"subject", "negated"}
    assert all(0 <= v <= 1 for v in res["judge_agreement"].values())
    assert res["negated"]["swapped-e1"]["n_images"] == 4 and res["control"]["base"]["n_images"] == 4

    from PIL import Image

    def image(arm, key, seed):
        return np.asarray(Image.open(out / "negated" / "images" / arm.replace("+", "_") / f"{key}_s{seed}.png"))

    key = json.loads((out / "negated" / "prompts.json").read_text())["prompts"][0]["id"]
    for seed in (0, 1):
        assert np.array_equal(image("base", key, seed), image("swapped-e1", key, seed)), "base swap changed an image"
    # stacked: the prompt as written plus the negative prompt, where base+negprompt sends the affirmative part
    sent = {r["arm"]: (r["prompt_used"], r["negative_prompt"]) for r in
            (json.loads(line) for p in (out / "negated").glob("runs/*/images.jsonl") for line in p.read_text().splitlines())
            if r["key"] == key}
    entry = json.loads((out / "negated" / "prompts.json").read_text())["prompts"][0]
    control_entry = json.loads((out / "control" / "prompts.json").read_text())["prompts"][0]
    assert sent["base+negprompt"] == (control_entry["prompt"], entry["negated_concepts"][0])
    assert sent["swapped+negprompt"] == (entry["prompt"], entry["negated_concepts"][0])
    assert any(not np.array_equal(image("base", key, s), image("swapped-e2", key, s)) for s in (0, 1)), \
        "a different encoder drew the same images"
    assert res["paired"]["swapped-e1 - base"]["mean"] == 0.0
    # omit = the affirmative part alone: the control's prompt, drawn from the same seed (two routes, one image
    # up to batched float reordering)
    control_key = json.loads((out / "control" / "prompts.json").read_text())["prompts"][0]["id"]
    omit = image("omit", key, 0).astype(int)
    control = np.asarray(Image.open(out / "control" / "images" / "base" / f"{control_key}_s0.png")).astype(int)
    assert np.abs(omit - control).mean() < 1.0
    assert "swapped-e2 - base+negprompt" in res["paired"]

    # the negative-prompt arm is the user-facing route: the pipeline called with negation_kwargs draws it
    from diffusers import DiffusionPipeline

    from integrations import negation_kwargs

    pipe = DiffusionPipeline.from_pretrained(str(T2I_DIR), safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    prompt = json.loads((out / "negated" / "prompts.json").read_text())["prompts"][0]["prompt"]
    direct = pipe(**negation_kwargs(pipe, prompt), generator=[torch.Generator("cpu").manual_seed(0)],
                  num_inference_steps=2, guidance_scale=res["sampling"]["guidance_scale"], output_type="pil").images[0]
    diff = np.abs(np.asarray(direct).astype(int) - image("base+negprompt", key, 0).astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05, "negation_kwargs and the base+negprompt arm drew different images"
    assert (out / "report.md").read_text().startswith("| arm | Neg Score")
    assert (top / "report.md").read_text().startswith("## Generator `if`")
    assert (out / "negated" / "grid.png").is_file() and (out / "control" / "report.md").is_file()


def _wins_by_hand(folder) -> list[float]:
    """Which object the world CLIPSeg picks, written out: mean probability on the referred object's mask
    against the other same-kind object's."""
    from PIL import Image
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    seg = CLIPSegForImageSegmentation.from_pretrained(SEG_DIR).eval()
    processor = CLIPSegProcessor.from_pretrained(SEG_DIR)
    wins = []
    for line in (folder / "set.jsonl").read_text().splitlines():
        r = json.loads(line)
        image = np.asarray(Image.open(folder / r["image"]).convert("RGB"))
        with torch.no_grad():
            p = torch.sigmoid(seg(**processor(text=[r["text"]], images=[image], return_tensors="pt")).logits)[0]
        target = torch.from_numpy(np.asarray(Image.open(folder / r["mask"])) > 0)
        other = torch.from_numpy(np.asarray(Image.open(folder / r["other_mask"])) > 0)
        wins.append(float(p[target].mean() > p[other].mean()))
    return wins


def test_seg_compare_two_encoders_through_cli(tmp_path, base_encoder_folder, other_encoder_folder):
    out = tmp_path / "seg"
    code = main(["testbed", "seg-compare", "--encoder", base_encoder_folder, "--encoder", other_encoder_folder,
                 "--samples", "6", "--out", str(out), "--no-progress"])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    for name in ("negated", "control"):
        arms = res["sets"][name]
        assert set(arms) == {"original", "swapped-e1", "swapped-e2", "split", "swapped-e1+split", "swapped-e2+split"}
        assert arms["swapped-e1+split"]["miou_0.3"] == arms["split"]["miou_0.3"]
        assert arms["swapped-e1"]["miou_0.3"] == arms["original"]["miou_0.3"]
        assert arms["swapped-e1"]["paired_iou_0.3_vs_original"]["mean"] == 0.0
        assert arms["swapped-e1"]["target_wins"] == arms["original"]["target_wins"]
        assert arms["original"]["target_wins"] == pytest.approx(np.mean(_wins_by_hand(out / "data" / name)))
        assert arms["swapped-e2"]["ap"] != arms["original"]["ap"], "a different encoder changed nothing"
    # the control set negates nothing: the split route reads it exactly as the plain one
    assert res["sets"]["control"]["split"]["miou_0.3"] == res["sets"]["control"]["original"]["miou_0.3"]
    assert res["sets"]["negated"]["split"]["miou_0.3"] != res["sets"]["negated"]["original"]["miou_0.3"]
    assert res["split_route"]["weight"] == json.loads((SEG_DIR / "negation_split_route.json").read_text())["weight"]
    texts = [json.loads(line)["text"] for line in (out / "data" / "negated" / "set.jsonl").read_text().splitlines()]
    assert all(re.search(r"\bnot\b|\bisn't\b", t) for t in texts), texts
    assert (out / "report.md").read_text().startswith("| set | arm | mIoU@0.3")
    assert (out / "negated" / "swapped-e2" / "overlays.png").is_file()


@pytest.mark.parametrize("argv, needle", [
    (["testbed", "t2i-compare", "--encoder", "/nonexistent/model"], "--encoder /nonexistent/model: not a folder"),
    (["testbed", "seg-compare", "--encoder", "/nonexistent/model"], "--encoder /nonexistent/model: not a folder"),
    (["testbed", "t2i-compare", "--encoder", "x", "--seeds", "a,b"], "--seeds: expected a comma list of int"),
    (["testbed", "t2i-compare", "--encoder", "x", "--prompts", "test"],
     "prompts must be one of evaluation, validation, validation-constructions, heldout, heldout-cues, got 'test'"),
    (["testbed", "seg-compare", "--encoder", "x", "--prompts", "test"],
     "prompts must be one of evaluation, heldout, got 'test'"),
    (["testbed", "pretrain-judge", "--steps", "0"], "--steps must be >= 1"),
])
def test_bad_input_is_one_line_exit_2(argv, needle, capsys, tmp_path):
    assert main([*argv, *(["--out", str(tmp_path / "o")] if "compare" in argv[1] else [])]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err


def test_world_prompt_sets_pair_negated_and_control():
    from integrations.routes import negation_prompts
    from negation_testbed.world.prompts import world_prompt_sets

    negated, control = world_prompt_sets()
    assert len(negated) == len(control) == 3 * len(OBJECTS)
    for n, c in zip(negated, control, strict=True):
        (affirmative,), (negative,) = negation_prompts([n["prompt"]])
        assert negative == n["negated_concepts"][0], n["prompt"]  # the negative-prompt arm removes the right object
        assert affirmative == c["prompt"] and n["subject"] == c["subject"]
        assert n["negated_concepts"][0] != n["subject"]


def test_validation_prompts_neither_train_nor_evaluate():
    """`--prompts validation`: every prompt splits into its control and its negated object like the
    evaluation's, and no frame, prompt or control of it is an evaluated or a training one, nor holds one."""
    from integrations.routes import negation_prompts
    from negation_testbed.world import language as L
    from negation_testbed.world.prompts import T2I_FORMS, VALIDATION_T2I_FORMS, world_prompt_sets

    negated, control = world_prompt_sets(prompts="validation")
    assert (negated, control) == world_prompt_sets(prompts="validation", seed=5)  # its own seed, deterministic
    ev_neg, ev_ctl = world_prompt_sets()
    assert len(negated) == len(ev_neg) and all(n["id"].startswith("val_") for n in negated + control)
    affirmative, negative = negation_prompts([n["prompt"] for n in negated])
    assert affirmative == [c["prompt"] for c in control]
    assert negative == [n["negated_concepts"][0] for n in negated]
    frames = {f for forms in VALIDATION_T2I_FORMS for f in forms if "{" in f}
    assert not frames & {f for forms in T2I_FORMS for f in forms} and not frames & {f for fs in L.TRAIN_T2I_FORMS
                                                                                   for f in fs}
    evaluated = [p["prompt"] for p in ev_neg + ev_ctl]
    for v in (p["prompt"] for p in negated + control):
        assert not any(e in v or v in e for e in evaluated), v
    training = [f.format(subject=f"a {c} {k}", place=pl, neg=n) for fs in L.TRAIN_T2I_FORMS for f in fs
                for c, k, pl, n in (("red", "cup", "kitchen", "fork"), ("blue", "car", "street", "bike"))]
    for v in (p["prompt"] for p in negated + control):
        assert not any(t in v or v in t for t in training), v
    with pytest.raises(ValueError, match="prompts must be one of"):
        world_prompt_sets(prompts="test")


def test_report_refuses_a_validation_run(tmp_path):
    from negation_encoder.errors import InputError
    from negation_testbed.reports import load

    (tmp_path / "t2i_compare.json").write_text(json.dumps({"prompt_set": "validation"}))
    with pytest.raises(InputError, match="t2i_compare.json: prompt_set 'validation'"):
        load(tmp_path)
    (tmp_path / "t2i_compare.json").write_text(json.dumps({"prompt_set": "evaluation"}))
    assert load(tmp_path)["t2i"]["prompt_set"] == "evaluation"
    # each wording column has its own file, and a run on another set is refused there too
    (tmp_path / "t2i_compare_heldout.json").write_text(json.dumps({"prompt_set": "validation"}))
    with pytest.raises(InputError, match="t2i_compare_heldout.json: prompt_set 'validation'; this file publishes the "
                                         "'heldout'"):
        load(tmp_path)
    (tmp_path / "t2i_compare_heldout.json").write_text(json.dumps({"prompt_set": "heldout"}))
    (tmp_path / "t2i_compare_validation_constructions.json").write_text(json.dumps({"prompt_set": "heldout"}))
    with pytest.raises(InputError, match="t2i_compare_validation_constructions.json: prompt_set 'heldout'"):
        load(tmp_path)
    (tmp_path / "t2i_compare_validation_constructions.json").unlink()
    (tmp_path / "seg_compare_heldout.json").write_text(json.dumps({}))  # a seg-compare file from before the option
    with pytest.raises(InputError, match="seg_compare_heldout.json: prompt_set 'evaluation'"):
        load(tmp_path)


def _t2i_result(prompt_set: str, scores: dict[str, float], paired: dict[str, float]) -> dict:
    arm = lambda v: {"neg_score": v, "ci95": [v - 0.1, v + 0.1]}  # noqa: E731
    return {"prompt_set": prompt_set, "generators": {"if": {
        "negated": {a: arm(v) for a, v in scores.items()}, "control": {},
        "paired": {k: {"mean": v, "ci95": [v - 0.05, v + 0.05]} for k, v in paired.items()}}}}


def test_route_table_shows_each_wording_column(tmp_path):
    """The README's wording table: one column per published set, each cell from its own file (hand-made files,
    so every number printed is checked), and nothing at all without held-out data."""
    from negation_testbed.reports import load, render, routes_block

    arms = ("base", "base+negprompt", "swapped", "swapped+negprompt")
    for name, prompt_set, first in (("t2i_compare.json", "evaluation", 0.3), ("t2i_compare_heldout.json", "heldout", 0.4)):
        (tmp_path / name).write_text(json.dumps(_t2i_result(
            prompt_set, dict(zip(arms, (first, first + 0.4, first + 0.45, first + 0.5), strict=True)),
            {"swapped - base+negprompt": 0.05, "swapped+negprompt - base+negprompt": 0.1})))
    heldout = json.loads((tmp_path / "t2i_compare_heldout.json").read_text())
    heldout["generators"]["if"]["negated"]["swapped"]["by_construction"] = {"not_any": {"mean": 0.375, "n_images": 8}}
    (tmp_path / "t2i_compare_heldout.json").write_text(json.dumps(heldout))
    (tmp_path / "t2i_compare_validation_constructions.json").write_text(json.dumps(_t2i_result(
        "validation-constructions", dict(zip(arms, (0.25, 0.5, 0.625, 0.75), strict=True)), {})))
    block = routes_block(load(tmp_path))
    assert "| route | evaluated frames | validation constructions | held-out constructions (a) |" in block
    assert "| generation: swapped encoder | 75.0 | 62.5 | 85.0 |" in block
    (tmp_path / "t2i_compare_validation_constructions.json").unlink()
    block = routes_block(load(tmp_path))
    assert "| route | evaluated frames | held-out constructions (a) |" in block
    page = render(load(tmp_path))["wording.md"]
    assert "| arm | `not_any` |" in page and "| swapped | 37.5 |" in page and "| base | - |" in page
    assert "| generation: plain | 30.0 | 40.0 |" in block and "| generation: stacked | 80.0 | 90.0 |" in block
    assert "| generation: swapped - negative prompt (pts) [95% CI] | +5.0 [+0.0, +10.0] | +5.0 [+0.0, +10.0] |" in block
    seg = {"prompt_set": "heldout", "sets": {"negated": {"original": {"target_wins": 0.25, "miou_0.3": 0.1},
                                                         "swapped": {"target_wins": 0.625, "miou_0.3": 0.2}}}}
    (tmp_path / "seg_compare_heldout.json").write_text(json.dumps(seg))
    block = routes_block(load(tmp_path))
    assert "| segmentation: swapped encoder | - | 0.625 |" in block
    (tmp_path / "t2i_compare_heldout.json").unlink()
    (tmp_path / "seg_compare_heldout.json").unlink()
    assert "| route |" not in routes_block(load(tmp_path))


def test_targets_page_puts_each_target_encoder_on_every_generator(tmp_path):
    """`negenc demo --target` runs are published beside the default: the page has one row per encoder on each
    generator (hand-made files, so every printed number is checked), the README's route table gains the column
    of the encoder trained for each generator's own reading, and a demo file of another target is refused."""
    from negation_encoder.errors import InputError
    from negation_testbed.reports import load, render, routes_block
    from negation_testbed.world.twins import METRIC_KEYS

    def t2i(swapped: dict[str, float]) -> dict:
        gens = {}
        for gen, v in swapped.items():
            arm = lambda x: {"neg_score": x, "ci95": [x - 0.1, x + 0.1], "negated_rate": x / 4}  # noqa: E731
            gens[gen] = {"negated": {"base": arm(0.3), "base+negprompt": arm(0.7), "swapped": arm(v),
                                     "swapped+negprompt": arm(v + 0.05)},
                         "control": {"base": {"subject_rate": 0.6}, "swapped": {"subject_rate": v - 0.2}},
                         "paired": {"swapped - base+negprompt": {"mean": v - 0.7, "ci95": [v - 0.8, v - 0.6]}}}
        return {"prompt_set": "evaluation", "generators": gens}

    def demo(target: str, x: float) -> dict:
        scores = {k: x for k in METRIC_KEYS}
        return {"target": target, "pipeline": {"family": "if"}, "base": {k: 0.5 for k in METRIC_KEYS},
                "base_split": scores, "finetuned": scores, "finetuned_split": scores}

    files = {"demo.json": demo("recipe", 0.875), "t2i_compare.json": t2i({"if": 0.9, "sd": 0.6, "sdxl": 0.5}),
             "demo_target_sdxl.json": demo("sdxl", 0.625), "t2i_compare_target_sdxl.json": t2i({"if": 0.4, "sdxl": 0.85})}
    def seg(x: float) -> dict:
        arms = {"original": {"miou_0.3": 0.125, "target_wins": 0.25}, "swapped": {"miou_0.3": x, "target_wins": x + 0.25}}
        control = {a: {"miou_0.3": 0.5 + v["miou_0.3"] / 10, "target_wins": 0.0} for a, v in arms.items()}
        for arm in (*arms.values(), *control.values()):
            arm["iou_bin_0.3"] = 0.0
        return {"sets": {"negated": arms, "control": control}}

    files |= {"seg_compare.json": seg(0.375), "seg_compare_target_sdxl.json": seg(0.25)}
    for name, obj in files.items():
        (tmp_path / name).write_text(json.dumps(obj))
    data = load(tmp_path)
    page = render(data)["targets.md"]
    assert "Original encoder: negated mIoU@0.3 0.125, object choice 0.250, affirmative control mIoU@0.3 0.512." in page
    assert "| `if` | 0.375 | 0.625 | 0.537 | - |" in page and "| `sdxl` | 0.250 | 0.500 | 0.525 | - |" in page
    assert "## Generator `sdxl`" in page and "## Generator `sd`" in page
    assert "| `if` | 50.0 [40.0, 60.0] | 12.5 | 30.0 | -20.0 [-30.0, -10.0] | 55.0 | - |" in page
    assert "| `sdxl` (this generator's reading) | 85.0 [75.0, 95.0] | 21.2 | 65.0 | +15.0 [+5.0, +25.0] | 90.0 | - |" in page
    assert "| `if` (this generator's reading) | 90.0" in page and "| `sdxl` | 40.0" in page
    assert "| existence (VALSE-style) | 0.500 | 0.875 | 0.625 |" in page
    block = routes_block(data)
    assert "| stacked | swapped, trained for that generator (`--target`) |" in block
    assert "`sdxl` generator | 30.0 | 70.0 | 50.0 | 55.0 | 85.0 |" in block
    assert "`sd` generator | 30.0 | 70.0 | 60.0 | 65.0 | - |" in block and "`if` generator | 30.0 | 70.0 | 90.0 | 95.0 | 90.0 |" in block
    assert "| negated retrieval R@5 | 0.500 | 0.875 | 0.875 | 0.875 | - |" in block
    (tmp_path / "demo_target_sdxl.json").write_text(json.dumps(demo("sd", 0.5)))
    with pytest.raises(InputError, match="demo_target_sdxl.json: target 'sd'; this file publishes `negenc demo --target sdxl`"):
        load(tmp_path)
    (tmp_path / "demo_target_sdxl.json").unlink()
    assert "targets.md" not in render(load(tmp_path)) and "trained for that generator" not in routes_block(load(tmp_path))


def test_world_prompt_files_load_with_eval_t2i(tmp_path):
    from eval_t2i.prompts import load_prompts
    from negation_testbed.world.prompts import world_prompt_sets

    negated, _ = world_prompt_sets(forms_per_kind=1)
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"name": "w", "prompts": negated}))
    items = load_prompts(path).items
    assert [i.questions[1] for i in items] == [f"Is there a {n['negated_concepts'][0]}?" for n in negated]


@pytest.mark.parametrize("asset", ["judge", "seg", "t2i", "t2i-sd"])
def test_pretrain_commands_are_deterministic(asset, tmp_path):
    """Two runs with the same seed write the same weights (a few steps, tiny batches). The SD-style generator
    reuses the committed world VAE (`--vae`), as the SDXL-style one is regenerated."""
    from safetensors.torch import load_file

    from negation_testbed.instruments.latent_generator import SD_DIR

    weights = {"judge": "model.safetensors", "seg": "model.safetensors"}.get(
        asset, "unet/diffusion_pytorch_model.safetensors")
    command = {"t2i-sd": ["pretrain-t2i", "--kind", "sd", "--vae", str(SD_DIR / "vae")]}.get(asset, [f"pretrain-{asset}"])
    runs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        extra = ["--sampling-prompts", "2"] if asset.startswith("t2i") else []
        assert main(["testbed", *command, "--steps", "2", "--out", str(out), *extra]) == 0
        runs.append(load_file(str(out / weights)))
        info = json.loads((out / "pretrain_info.json").read_text())
        assert info["command"] == "negenc testbed " + " ".join(command[:3]) and info["config"]["steps"] == 2
        if asset.startswith("t2i"):  # the saved sampling settings are the validation choice, and the pipeline reads them
            from negation_testbed.drop_in.t2i_compare import pipeline_sampling

            table, chosen = info["sampling"]["table"], info["sampling"]
            assert len(table) == 12 and info["config"]["sampling_prompts"] == 2
            best = max(r["reader_subject_rate"] for r in table)
            assert {"steps": chosen["steps"], "guidance_scale": chosen["guidance_scale"], "reader_subject_rate": best} \
                in table
            assert pipeline_sampling(out) == (chosen["steps"], chosen["guidance_scale"])
    if asset == "t2i":  # refused in one line before any training
        assert main(["testbed", "pretrain-t2i", "--sampling-prompts", "-1", "--out", str(tmp_path / "bad")]) == 2
        assert not (tmp_path / "bad").exists()
    differing = [name for name in runs[0] if not torch.equal(runs[0][name], runs[1][name])]
    assert not differing and set(runs[0]) == set(runs[1]), f"{asset}: tensors differ between runs: {differing[:5]}"


def test_t2i_compare_checks_every_encoder_before_any_image(tmp_path, base_encoder_folder, capsys):
    """An encoder of the wrong width is refused in one line before the base arms run, so the folder can
    be reused for the corrected run (no --resume/--overwrite needed)."""
    from negation_encoder.checkpoint.export import export_checkpoint
    from negation_encoder.testing import tiny
    from negation_testbed.instruments.base_clip import world_tokenizer

    tok = world_tokenizer()
    wide = tmp_path / "wide"
    export_checkpoint(tiny.build_clip_model(seed=0, tokenizer=tok, text_hidden_size=48), tok,
                      tiny.build_clip_image_processor(32), wide)
    out = tmp_path / "t2i"
    argv = ["testbed", "t2i-compare", "--limit", "1", "--seeds", "0", "--steps", "2", "--out", str(out),
            "--generator", "if", "--no-progress"]
    assert main([*argv, "--encoder", base_encoder_folder, "--encoder", str(wide)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hidden size 48 does not match the UNet's cross_attention_dim 64" in err, err
    assert not out.exists() or not any(out.rglob("*.png")), "images were made before the check"
    assert main([*argv, "--encoder", base_encoder_folder]) == 0  # the same folder takes the corrected run


def test_drop_in_measures_segmenter_and_generator_with_the_routes(tmp_path, base_encoder_folder):
    """The demo's last step: real (small) comparisons; the base encoder swapped in changes nothing, the
    split route and the negative prompt are beside it, and the report section names both tasks."""
    from negation_testbed.drop_in.measure import drop_in, drop_in_markdown

    d = drop_in(base_encoder_folder, tmp_path / "d", seg_samples=6, t2i_prompts=2, seeds=(0,), t2i_steps=2,
                generators=("if",))
    assert "t2i_generators" not in d and d["settings"]["generators"] == ["if"]
    assert set(d["seg"]["negated"]) == {"original", "swapped", "split", "swapped+split"}
    assert d["seg"]["negated"]["swapped"]["miou_0.3"] == d["seg"]["negated"]["original"]["miou_0.3"]
    assert set(d["t2i"]["negated"]) == {"base", "base+negprompt", "omit", "swapped", "swapped+negprompt"}
    assert d["t2i"]["negated"]["swapped"]["neg_score"] == d["t2i"]["negated"]["base"]["neg_score"]
    text = drop_in_markdown(d)
    assert "| negated | split |" in text and "| base+negprompt |" in text


def test_t2i_compare_on_the_latent_generators_swaps_every_clip_slot(tmp_path, base_encoder_folder, other_encoder_folder):
    """SD-style and SDXL-style world generators through the same runner: one encoder folder fills each CLIP
    slot (SDXL: both towers), so the base encoder reproduces the base arm image for image and another encoder
    does not; results sit under generators.{sd,sdxl} with the keys the IF-style one has; the demo's drop-in
    reports them beside the IF-style one."""
    from PIL import Image

    from negation_testbed.drop_in.measure import drop_in_markdown, t2i_by_generator

    out = tmp_path / "t2i"
    assert main(["testbed", "t2i-compare", "--encoder", base_encoder_folder, "--encoder", other_encoder_folder,
                 "--limit", "1", "--seeds", "0", "--steps", "2", "--out", str(out), "--generator", "sd,sdxl",
                 "--no-progress"]) == 0
    whole = json.loads((out / "results.json").read_text())
    assert list(whole["generators"]) == ["sd", "sdxl"]
    for gen, cls in (("sd", "StableDiffusionPipeline"), ("sdxl", "StableDiffusionXLPipeline")):
        res = whole["generators"][gen]
        assert res["pipeline_class"] == cls
        assert {"negated", "control", "paired", "judge_agreement", "audit", "sampling"} <= set(res)
        key = json.loads((out / gen / "negated" / "prompts.json").read_text())["prompts"][0]["id"]

        def image(arm, gen=gen, key=key):
            return np.asarray(Image.open(out / gen / "negated" / "images" / arm / f"{key}_s0.png")).astype(int)

        assert np.array_equal(image("base"), image("swapped-e1")), f"{gen}: the base encoder swapped in changed an image"
        assert not np.array_equal(image("base"), image("swapped-e2")), f"{gen}: another encoder drew the same image"
    d = {"seg": {}, "t2i_generators": {g: {"negated": r["negated"], "control": r["control"]}
                                       for g, r in whole["generators"].items()},
         "settings": {"seg_samples": 0, "t2i_prompts": 1, "seeds": [0]}}
    assert list(t2i_by_generator(d)) == ["sd", "sdxl"]
    assert "| sdxl | swapped-e2 |" in drop_in_markdown(d)


def test_t2i_compare_refuses_a_missing_generator_in_one_line(tmp_path, base_encoder_folder, capsys):
    argv = ["testbed", "t2i-compare", "--encoder", base_encoder_folder, "--out", str(tmp_path / "o")]
    assert main([*argv, "--generator", "if,sd3"]) == 2
    assert "generators must be distinct names among if, sd, sdxl, got ['if', 'sd3']" in capsys.readouterr().err
    assert main([*argv, "--pipeline", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--pipeline" in err and "model_index.json" in err
    assert not (tmp_path / "o").exists()


def test_by_construction_scores_each_heldout_construction_by_hand():
    """Neg Score per construction: an image scores 1 iff the subject is judged present and the negated object
    absent (P(yes) > 0.5), averaged per construction and arm; checked against a hand count."""
    from negation_testbed.drop_in.t2i_compare import by_construction

    recs = [{"arm": "swapped", "key": "p1", "seed": 0, "probabilities": [0.9, 0.1]},   # 1
            {"arm": "swapped", "key": "p1", "seed": 1, "probabilities": [0.9, 0.8]},   # 0: negated drawn
            {"arm": "swapped", "key": "p2", "seed": 0, "probabilities": [0.2, 0.1]},   # 0: no subject
            {"arm": "base", "key": "p2", "seed": 0, "probabilities": [0.7, 0.3]}]      # 1
    out = by_construction(recs, {"p1": "not_any", "p2": "copula_after_object"})
    assert out["swapped"] == {"copula_after_object": {"mean": 0.0, "n_images": 1},
                              "not_any": {"mean": 0.5, "n_images": 2}}
    assert out["base"] == {"copula_after_object": {"mean": 1.0, "n_images": 1}}
