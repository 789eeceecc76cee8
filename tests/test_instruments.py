"""The world's t2i instruments: the rule-based reader, the judge/reader audit, the
validation prompts and the judge's generated-image failure modes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from negation_testbed.instruments.audit import (
    Audit,
    audit_images,
    audit_t2i_compare,
    audit_table,
    validation_prompts,
)
from negation_testbed.instruments.reader import EMPTY, OBJECT, UNREADABLE, found, read_image, reader_says_yes
from negation_testbed.world.scenes import (
    BACKGROUND,
    CELLS,
    COLOURS,
    OBJECTS,
    Scene,
    SceneObject,
    render,
    sample_scene,
)


def test_reader_is_exact_on_rendered_scenes():
    rng = np.random.default_rng(2000)
    wrong = []
    for i in range(400):
        scene = sample_scene(rng, f"r{i}", n_objects=(1, 2, 3))
        got = found(read_image(render(scene)[0]))
        want = {(o.cell, o.kind, o.colour) for o in scene.objects}
        if got != want:
            wrong.append((scene.to_dict(), got))
    assert not wrong, wrong[:3]


def test_reader_reads_every_kind_colour_and_size_including_uint8_wraparound():
    """Every (kind, colour, size) in every cell; white objects whose colour shift passes 255 wrap in
    `render`'s uint8 cast, and the reader still reads them."""
    rng = np.random.default_rng(1)
    for k, kind in enumerate(OBJECTS):
        for c, colour in enumerate(COLOURS):
            for size in ("small", "large"):
                cell = CELLS[(k + c) % 4]
                scene = Scene("x", "kitchen", [SceneObject(kind, colour, size, cell)], seed=int(rng.integers(1 << 30)))
                readings = read_image(render(scene)[0])
                assert found(readings) == {(cell, kind, colour)}, (kind, colour, size, readings)
    wrapped = np.array([1, 3, 250], dtype=np.uint8)  # white + (17, -, +10): red wrapped past 255
    img = render(Scene("w", "street", [SceneObject("cup", "white", "large", "top left")], seed=3))[0]
    mask = render(Scene("w", "street", [SceneObject("cup", "white", "large", "top left")], seed=3))[1]["cup"]
    img[mask] = wrapped
    assert found(read_image(img)) == {("top left", "cup", "white")}


@pytest.mark.parametrize("theme", list(BACKGROUND))
def test_reader_says_empty_on_a_blank_background(theme):
    image = render(Scene("blank", theme, [], seed=5))[0]
    readings = read_image(image)
    assert [r.status for r in readings] == [EMPTY] * 4
    assert not reader_says_yes(readings, "fork")


def test_reader_does_not_guess_on_a_tint_or_a_smear():
    rng = np.random.default_rng(0)
    bg = np.array(BACKGROUND["kitchen"], dtype=np.float32)
    tinted = bg + 0.3 * (np.array(COLOURS["red"]) - bg) + rng.normal(0, 8, (32, 32, 3))  # an empty reddish background
    readings = read_image(np.clip(tinted, 0, 255).astype(np.uint8))
    assert [r.status for r in readings] == [EMPTY] * 4
    smear = render(Scene("s", "kitchen", [], seed=2))[0]
    smear[2:14, 3] = COLOURS["red"]  # a thin red stroke and a dot: paint, but no glyph
    smear[8, 4:7] = COLOURS["red"]
    first = read_image(smear)[0]
    assert first.status == UNREADABLE and first.iou < 0.5 and not reader_says_yes([first], "fork")


def test_reader_accepts_pil_images_of_other_sizes():
    scene = Scene("p", "park", [SceneObject("tree", "green", "large", "bottom right")], seed=9)
    big = Image.fromarray(render(scene)[0]).resize((96, 96), Image.NEAREST)
    assert found(read_image(big)) == {("bottom right", "tree", "green")}


class FixedJudge:
    """A judge that answers from a table: (image index, question) -> P(yes)."""

    def __init__(self, answers: dict[str, float]):
        self.answers = answers

    def yes_probability(self, images, questions):
        return [self.answers[q] for q in questions]


def test_audit_counts_agreement_per_question_type():
    cup = render(Scene("a", "kitchen", [SceneObject("cup", "red", "large", "top left")], seed=1))[0]
    blank = render(Scene("b", "kitchen", [], seed=2))[0]
    judge = FixedJudge({"Is there a cup?": 0.9, "Is there a fork?": 0.7, "Is there a red cup?": 0.8})
    audit = audit_images([cup, blank], [["Is there a cup?", "Is there a fork?"], ["Is there a red cup?"]], judge)
    s = audit.summary()
    # subject: cup image yes/yes (agree), blank image judge yes / reader no (disagree)
    assert s["subject"] == {"n": 2, "judge_yes_rate": 1.0, "reader_yes_rate": 0.5, "agreement": 0.5}
    # negated: "fork" on the cup image: judge yes (0.7), reader no
    assert s["negated"] == {"n": 1, "judge_yes_rate": 1.0, "reader_yes_rate": 0.0, "agreement": 0.0}
    assert s["cells"] == {OBJECT: 1, EMPTY: 7, UNREADABLE: 0, "total": 8, "unreadable_rate": 0.0}
    with pytest.raises(ValueError, match="2 images, 1 lists"):
        audit_images([cup, blank], [["Is there a cup?"]], judge)


def test_audit_of_a_t2i_compare_folder(tmp_path):
    part = tmp_path / "control" / "runs" / "base"
    (part / "images" / "base").mkdir(parents=True)
    img = render(Scene("a", "street", [SceneObject("bus", "blue", "large", "bottom left")], seed=4))[0]
    Image.fromarray(img).save(part / "images" / "base" / "bus_s0.png")
    record = {"arm": "base", "key": "bus_0_control", "seed": 0, "image": "images/base/bus_s0.png",
              "questions": ["Is there a bus?"]}
    (part / "images.jsonl").write_text(json.dumps(record) + "\n")
    result = audit_t2i_compare(tmp_path, FixedJudge({"Is there a bus?": 0.99}))
    assert result["control"]["base"]["subject"]["agreement"] == 1.0
    assert "| control | base | subject | 1 |" in audit_table(result)


def test_validation_prompts_are_fresh_and_never_evaluation_prompts():
    from negation_testbed.world.prompts import world_prompt_sets

    negated, control = world_prompt_sets(3)
    evaluation = {p["prompt"] for p in negated + control}
    val = validation_prompts(200)
    assert val == validation_prompts(200)  # deterministic
    assert not evaluation & {v["prompt"] for v in val}
    assert all(v["subject"] in v["prompt"] and v["questions"] == [f"Is there a {v['subject']}?"] for v in val)


def test_generated_like_is_deterministic_and_keeps_labels():
    from negation_testbed.instruments.judge import generated_like

    scene = sample_scene(np.random.default_rng(3), "g", n_objects=(3,))
    a, objs_a = generated_like(scene, np.random.default_rng(11))
    b, objs_b = generated_like(scene, np.random.default_rng(11))
    assert np.array_equal(a, b) and objs_a == objs_b == scene.objects
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)


def test_audit_default_is_empty():
    assert Audit().summary()["cells"]["total"] == 0


def test_importance_sampled_timesteps_keep_the_weighted_objective():
    import torch

    from negation_testbed.instruments.generator import (
        GeneratorConfig,
        build_scheduler,
        loss_weights,
        sample_timesteps,
    )

    cfg = GeneratorConfig(timestep_sampling="importance")
    alphas = build_scheduler(cfg).alphas_cumprod
    w = loss_weights(alphas, torch.arange(cfg.train_timesteps), cfg)
    q = 0.9 * w / w.sum() + 0.1 / len(w)
    factor = w / (len(w) * q)
    assert torch.allclose((q * factor).sum(), w.mean())  # E_q[factor * err] = mean_t w(t) err(t) for any err
    t, f = sample_timesteps(4096, w, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(f, factor[t]) and w[t].mean() > 1.3 * w.mean()  # draws land where the weight is
    uniform = GeneratorConfig(timestep_sampling="uniform")
    t, f = sample_timesteps(8, w, uniform, torch.Generator().manual_seed(0))
    assert torch.equal(f, w[t])


def test_pipeline_sampling_reads_pretrain_info(tmp_path):
    from negation_testbed.drop_in.t2i_compare import pipeline_sampling

    assert pipeline_sampling(tmp_path) == (50, 4.0)  # a folder without the entry: the fallback settings
    (tmp_path / "pretrain_info.json").write_text(json.dumps({"sampling": {"steps": 20, "guidance_scale": 7.0}}))
    assert pipeline_sampling(tmp_path) == (20, 7.0)
