"""The downstream-aware terms: omit_states (token states toward the affirmative part's, as a UNet reads
them), seg_loss (through a frozen CLIPSeg) and unet_loss (through a frozen UNet), against hand
computations and in short real runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from negation_encoder.cli import main
from negation_encoder.data.referring import read_referring
from negation_encoder.errors import InputError
from negation_encoder.testing import tiny
from negation_encoder.training import TrainConfig, train
from negation_encoder.training.losses import state_mse
from negation_encoder.training.terms.seg_loss import FrozenSegmenter, SegmentationLoss, check_seg_inputs
from negation_encoder.training.terms.unet_loss import FrozenDenoiser

from ._numerics import assert_close_in_norm
from ._tiny_world import make_segmentation_world


def test_state_distillation_is_the_mean_squared_error_over_target_rows():
    pred = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[9.0, 9.0], [9.0, 9.0]]])
    target = torch.tensor([[[0.0, 2.0], [3.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]])
    loss = state_mse(pred, target, torch.tensor([True, False]))
    assert loss.item() == pytest.approx((1 + 0 + 0 + 4) / 4)  # row 2 has no target
    assert state_mse(pred, target, torch.tensor([False, False])).item() == 0.0


def test_state_distillation_counts_only_the_given_positions():
    pred = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[9.0, 9.0], [9.0, 9.0]]])
    target = torch.zeros_like(pred)
    keep = torch.tensor([[True, False], [True, True]])
    loss = state_mse(pred, target, torch.tensor([True, False]), keep)
    assert loss.item() == pytest.approx((1 + 4) / 2)  # row 1, position 1 only; row 2 has no target
    both = state_mse(pred, target, torch.tensor([True, True]), keep)
    assert both.item() == pytest.approx((1 + 4 + 4 * 81) / 6)


def test_skip_bare_leaves_out_exactly_the_negations_whose_affirmative_part_is_the_stand_in():
    """omit_states' (and omit_pooled's) skip_bare: a bare negation ("a scene with no tree": nothing affirmed, so
    the splitter's affirmative part is its stand-in "a photo", not the caption's frame) feeds no omit term; a negation
    with an affirmative part still does, and so does the bare one without the option."""
    from negation_encoder.data import NegationRecord
    from negation_encoder.splitting import EMPTY_AFFIRMATIVE
    from negation_encoder.training.batching import examples_from_records
    from negation_encoder.training.checks import build_terms

    captions = ["a scene with no tree", "a kitchen with a cup and no fork", "this scene does not contain any lamp",
                "an image showing a dog, with no ball in the scene"]
    records = [NegationRecord(id=f"r{i}", image=f"{i}.png", caption="x", negated_caption=c, negation_type="absence",
                              negated_concept="x", source="test") for i, c in enumerate(captions)]

    def fed(skip: bool) -> list[bool]:
        cfg = TrainConfig.from_dict({"pipeline": {"family": "sdxl", "slot": "text_encoder_2"}, "objective": {
            "omit_states": {"weight": 1.0, "skip_bare": skip}, "omit_pooled": {"weight": 1.0, "skip_bare": skip}}})
        examples = examples_from_records(records, build_terms(cfg))
        assert [ex.affirmative == EMPTY_AFFIRMATIVE for ex in examples] == [True, False, True, False]
        assert all(("omit_states" in ex.eligible) == ("omit_pooled" in ex.eligible) for ex in examples)
        return ["omit_states" in ex.eligible for ex in examples]

    assert fed(False) == [True, True, True, True]
    assert fed(True) == [False, True, False, True]


def test_skip_pooled_leaves_out_exactly_the_end_of_text_position_clip_pools():
    """omit_states' skip_pooled masks the position CLIP's pooler reads (transformers' own pooled output is the
    reference), and only that one, for captions of different lengths."""
    from negation_encoder.training.batching import Example
    from negation_encoder.training.terms import SetupContext
    from negation_encoder.training.terms.omit_states import OmitStates, OmitStatesConfig

    tok = tiny.build_clip_tokenizer()
    model = tiny.build_clip_text_model(seed=0, tokenizer=tok).eval()
    texts = ["a dog with no cat", "a photo", "a red cup and a blue plate on a table"]
    examples = [Example(0, t, t, (), t, "absence", "test", affirmative=t, eligible=frozenset({"omit_states"}))
                for t in texts]
    cfg = TrainConfig.from_dict({"pipeline": {"length": 16}, "objective": {"mcq": 1.0}})

    def prepared(skip: bool) -> OmitStates:
        term = OmitStates(OmitStatesConfig(skip_pooled=skip), cfg)
        term.prepare(SetupContext(cfg, None, None, tok, examples, torch.zeros(1, 4), ["0.png"], torch.device("cpu")))
        return term

    assert prepared(False).positions is None
    term = prepared(True)
    with torch.no_grad():
        o = model(input_ids=term.positive.ids, attention_mask=term.positive.mask)
    skipped = (~term.positions).nonzero().tolist()
    assert [r for r, _ in skipped] == [0, 1, 2]
    for r, pos in skipped:
        assert torch.equal(o.last_hidden_state[r, pos], o.pooler_output[r])


def test_segmentation_loss_is_bce_plus_dice_by_hand():
    logits = torch.tensor([[[2.0, -1.0], [0.5, -3.0]]])
    mask = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    p = torch.sigmoid(logits)
    bce = -(mask * torch.log(p) + (1 - mask) * torch.log(1 - p)).mean()
    dice = 1 - (2 * (p * mask).sum() + 1) / (p.sum() + mask.sum() + 1)
    assert SegmentationLoss(dice=0.5)(logits, mask).item() == pytest.approx((bce + 0.5 * dice).item(), rel=1e-6)


def test_segmentation_choice_part_by_hand():
    """softplus(mean logit on the other object - mean logit on the referred one), averaged over the samples
    that name another object; a sample with an empty other mask adds nothing, and none at all adds 0."""
    logits = torch.tensor([[[2.0, -1.0], [0.5, -3.0]], [[1.0, 4.0], [0.0, 0.0]], [[0.3, 0.1], [0.2, 0.4]]])
    mask = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]])
    other = torch.tensor([[[0.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    hand = (math.log1p(math.exp(-2.0 - 1.25)) + math.log1p(math.exp(4.0 - 1.0))) / 2  # rows 0 and 1 only
    plain = SegmentationLoss(dice=1.0)(logits, mask)
    with_choice = SegmentationLoss(dice=1.0, choice=2.0)(logits, mask, other)
    assert (with_choice - plain).item() == pytest.approx(2.0 * hand, rel=1e-6)
    assert SegmentationLoss(dice=1.0, choice=2.0)(logits, mask, torch.zeros_like(other)).item() == \
        pytest.approx(plain.item(), rel=1e-7)
    assert SegmentationLoss(dice=1.0, choice=0.0)(logits, mask, other).item() == pytest.approx(plain.item(), rel=1e-7)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_segmentation_world(tmp_path_factory.mktemp("downstream"))


def _cfg(world, out, objective, **dotted) -> TrainConfig:
    """A short run on the tiny world with `objective`; `dotted` keys (`__` for the dot) override."""
    cfg = TrainConfig.from_dict({
        "model": {"base": world["base"]}, "data": {"files": [world["data"]], "images": world["images"]},
        "optim": {"steps": 6, "batch_size": 8, "lr": 5e-3, "warmup_steps": 0},
        "run": {"out": str(out), "log_every": 1, "save_every": 6}, "objective": objective})
    return cfg.override({k.replace("__", "."): v for k, v in dotted.items()})


def _seg(world, **options) -> dict:
    return {"weight": 1.0, "model": world["clipseg"], "data": [world["refs"]], **options}


def _states(model_dir, texts, length=77):
    from transformers import CLIPTextModel, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(model_dir, subfolder="tokenizer")
    te = CLIPTextModel.from_pretrained(model_dir, subfolder="text_encoder").eval()
    enc = tok(texts, padding="max_length", max_length=length, return_tensors="pt")
    with torch.no_grad():
        return te(enc.input_ids, attention_mask=enc.attention_mask).last_hidden_state


def test_omit_states_moves_negated_prompts_toward_their_affirmative_part(world, tmp_path):
    """After a short run with omit_states alone, the exported text encoder's states of a negated caption
    (at the pipeline's 77 positions) are closer to the base's states of its affirmative part than the
    base's own states of the negated caption were; the log shows the term going down."""
    res = train(_cfg(world, tmp_path / "run", {"omit_states": 1.0}, pipeline__length=16, optim__lr=1e-3,
                     optim__steps=12, run__save_every=12), progress=False, echo=None)
    log = [e for e in res.log if "omit_states" in e]
    assert log and log[-1]["omit_states"] < log[0]["omit_states"]
    from transformers import CLIPModel

    base_dir = tmp_path / "basefolder"
    from negation_encoder.checkpoint.export import export_checkpoint

    export_checkpoint(CLIPModel.from_pretrained(world["base"]), tiny.build_clip_tokenizer(),
                      tiny.build_clip_image_processor(32), base_dir)
    negated, affirmative = "a photo of a dog with no cat", "a photo of a dog"
    before = F.mse_loss(_states(base_dir, [negated], 16), _states(base_dir, [affirmative], 16))
    after = F.mse_loss(_states(res.model_dir, [negated], 16), _states(base_dir, [affirmative], 16))
    assert after < before


def test_preserve_states_is_the_padded_states_mse_of_the_affirmative_texts_by_hand(world, tmp_path):
    """preserve_states' value at step 1 (the tower still equals the base) is 0, and with the tower moved it
    equals the hand-computed MSE of the tower's 16-position states of each example's affirmative text
    against the base's, over every row and position."""
    from accelerate import Accelerator

    from negation_encoder.image_cache import ImageEmbeddingCache
    from negation_encoder.training.checkpoints import RunDir
    from negation_encoder.training.checks import check_inputs
    from negation_encoder.training.setup import setup
    from negation_encoder.training.step import compute_loss

    cfg = _cfg(world, tmp_path / "ps", {"omit_states": 1.0, "preserve_states": 1.0}, pipeline__length=16,
               optim__steps=1, run__save_every=1)
    acc, run = Accelerator(cpu=True), RunDir(cfg.run.out)
    state = setup(cfg, check_inputs(cfg, acc, run, False, False, None), acc, run, ImageEmbeddingCache(tmp_path / "cache"),
                  progress=False)
    batch = state.batch(0, 0)
    _, parts = compute_loss(state, batch)
    assert parts["preserve_states"].item() == pytest.approx(0.0, abs=1e-10)  # tower == base: nothing moved
    with torch.no_grad():  # move the tower, then compare with a hand computation
        for p in state.params:
            p.add_(0.01 * torch.randn_like(p))
        _, parts = compute_loss(state, batch)
        rows = batch.terms["preserve_states"]
        ids = rows["affirmative_ids"]
        mask = rows["affirmative_mask"] if cfg.pipeline.reading().attention_mask else None
        mine = state.tower.text_model(input_ids=ids, attention_mask=mask).last_hidden_state
        base = state.base_text(input_ids=ids, attention_mask=mask).last_hidden_state
    assert mine.shape[1] == 16
    assert parts["preserve_states"].item() == pytest.approx(((mine - base) ** 2).mean().item(), rel=1e-5)


def test_preserve_states_twins_add_the_affirmative_twins_of_negated_captions_by_hand(world, tmp_path):
    """preserve_states with twins: one mean over the batch's affirmative rows and, for each negated caption
    with an extra positive, its first one (its affirmative twin, same frame), by hand; records without a
    twin (no extra positive, or a caption that negates nothing) add no row."""
    from accelerate import Accelerator

    from negation_encoder.data import read_records, write_records
    from negation_encoder.image_cache import ImageEmbeddingCache
    from negation_encoder.training.checkpoints import RunDir
    from negation_encoder.training.checks import check_inputs
    from negation_encoder.training.setup import setup
    from negation_encoder.training.step import compute_loss

    records = read_records(world["data"])
    for i, r in enumerate(records):  # a twin on every other absence record, and on a presence record (never read)
        if (r.negation_type == "absence" and i % 2 == 0) or r.negation_type == "presence":
            r.extra_positives = [r.negated_caption.replace(" with no ", " in a scene with a ")]
    data = tmp_path / "twins.jsonl"
    write_records(data, records)
    cfg = _cfg(world, tmp_path / "pt", {"omit_states": 1.0, "preserve_states": {"weight": 1.0, "twins": True}},
               pipeline__length=16, optim__steps=1, run__save_every=1, data__files=[str(data)],
               optim__batch_size=16)
    acc, run = Accelerator(cpu=True), RunDir(cfg.run.out)
    state = setup(cfg, check_inputs(cfg, acc, run, False, False, None), acc, run, ImageEmbeddingCache(tmp_path / "cache"),
                  progress=False)
    batch = state.batch(0, 0)
    examples = [state.examples[i] for i in batch.example_index.tolist()]
    twins = [ex.extra_positives[0] for ex in examples if ex.has_negation and ex.extra_positives]
    assert 0 < len(twins) < len(examples)
    assert all(" in a scene with a " in t for t in twins)
    with torch.no_grad():
        for p in state.params:
            p.add_(0.01 * torch.randn_like(p))
        _, parts = compute_loss(state, batch)
        texts = [ex.affirmative or ex.positive for ex in examples] + twins
        enc = state.table.tokenizer(texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
        mask = enc.attention_mask if cfg.pipeline.reading().attention_mask else None
        mine = state.tower.text_model(input_ids=enc.input_ids, attention_mask=mask).last_hidden_state
        base = state.base_text(input_ids=enc.input_ids, attention_mask=mask).last_hidden_state
    assert parts["preserve_states"].item() == pytest.approx(((mine - base) ** 2).mean().item(), rel=1e-5)
    without = _cfg(world, tmp_path / "pn", {"omit_states": 1.0, "preserve_states": 1.0}, pipeline__length=16)
    assert without.objective["preserve_states"].twins is False


def test_seg_loss_trains_only_the_text_tower_through_a_frozen_clipseg(world, tmp_path):
    from transformers import CLIPSegForImageSegmentation

    frozen = CLIPSegForImageSegmentation.from_pretrained(world["clipseg"]).state_dict()
    res = train(_cfg(world, tmp_path / "seg", {"seg_loss": _seg(world, batch_size=4), "preserve": 1.0}),
                progress=False, echo=None)
    log = [json.loads(x) for x in (tmp_path / "seg" / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["referring_records"] == 12
    steps = [e for e in log if "seg_loss" in e]
    assert len(steps) == 6 and steps[-1]["seg_loss"] < steps[0]["seg_loss"]
    after = CLIPSegForImageSegmentation.from_pretrained(world["clipseg"]).state_dict()
    assert all(torch.equal(frozen[k], after[k]) for k in frozen), "the frozen CLIPSeg changed on disk"
    from transformers import CLIPModel

    tuned, base = CLIPModel.from_pretrained(res.model_dir), CLIPModel.from_pretrained(world["base"])
    assert not torch.equal(tuned.text_projection.weight, base.text_projection.weight)
    assert torch.equal(tuned.visual_projection.weight, base.visual_projection.weight)


def test_frozen_models_run_in_bfloat16_and_the_tower_still_trains_on_cpu(world, tmp_path):
    """optim.frozen_dtype bfloat16: the frozen CLIPSeg and the base tower's copy run in bf16, hand their
    outputs on in float32, and the trained tower stays float32 and moves, with finite losses."""
    from accelerate import Accelerator

    from negation_encoder.image_cache import ImageEmbeddingCache
    from negation_encoder.training.checkpoints import RunDir
    from negation_encoder.training.checks import check_inputs
    from negation_encoder.training.setup import setup
    from negation_encoder.training.step import train_step

    cfg = _cfg(world, tmp_path / "bf16", {"seg_loss": _seg(world, batch_size=4), "preserve": 1.0, "infonce": 1.0},
               optim__frozen_dtype="bfloat16", optim__steps=3)
    acc, run = Accelerator(cpu=True), RunDir(cfg.run.out)
    state = setup(cfg, check_inputs(cfg, acc, run, False, False, None), acc, run, ImageEmbeddingCache(tmp_path / "c"),
                  progress=False)
    segmenter = state.objective.terms["seg_loss"].segmenter
    assert segmenter.model.dtype == torch.bfloat16
    assert next(state.base_text.parameters()).dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in state.params)
    before = [p.detach().clone() for p in state.params]
    logs = [train_step(state, step) for step in range(3)]
    assert all(math.isfinite(e[k]) for e in logs for k in ("loss", "seg_loss", "preserve", "infonce")), logs
    assert any(not torch.equal(a, p) for a, p in zip(before, state.params, strict=True)), "the tower did not move"
    with pytest.raises(InputError, match="frozen_dtype must be one of float32, bfloat16, float16"):
        cfg.override({"optim.frozen_dtype": "int8"})


def test_seg_inputs_are_checked_before_compute(world, tmp_path, capsys):
    def args(out, *sets):
        return ["train", "--base", world["base"], "--data", world["data"], "--images", world["images"],
                "--no-progress", "--out", str(out), "--set", "optim.steps=2", "optim.batch_size=8",
                "objective.infonce=0", "objective.mcq=0", "objective.seg_loss=1", *sets]

    assert main(args(tmp_path / "a")) == 2
    assert "objective.seg_loss: seg_loss needs model" in capsys.readouterr().err
    wide = tmp_path / "wide"
    tiny.build_clipseg(seed=0, projection_dim=16).save_pretrained(wide)
    assert main(args(tmp_path / "b", f"objective.seg_loss.model={wide}", f"objective.seg_loss.data={world['refs']}")) == 2
    err = capsys.readouterr().err
    assert "projection 16 do not fit the base's 32 / 24" in err and err.count("\n") == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "image": "i0.png", "text": "a cup", "mask": "nope.png"}) + "\n")
    assert main(args(tmp_path / "c", f"objective.seg_loss.model={world['clipseg']}", f"objective.seg_loss.data={bad}",
                     f"objective.seg_loss.images={Path(world['refs']).parent}")) == 2
    assert "'nope.png' not found" in capsys.readouterr().err
    assert not (tmp_path / "c" / "image_cache").exists()


def test_referring_records_name_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"id": "a", "image": "i.png", "text": "t", "mask": "m.png"}) + "\n"
                    + json.dumps({"id": "b", "image": "i.png", "text": "t", "mask": "m.png", "negated": "yes"}) + "\n")
    with pytest.raises(Exception, match=r"r.jsonl:2: field 'negated' must be true or false"):
        read_referring(path)
    path.write_text(json.dumps({"id": "a", "image": "i.png", "text": "t", "mask": "m.png", "affirmative": ""}) + "\n")
    with pytest.raises(Exception, match=r"r.jsonl:1: field 'affirmative' must be a non-empty string, got ''"):
        read_referring(path)
    path.write_text(json.dumps({"id": "a", "image": "i.png", "text": "t", "mask": "m.png", "affirmative": "a cup"}) + "\n")
    assert read_referring(path)[0].affirmative == "a cup"
    with pytest.raises(InputError, match="objective.seg_loss: seg_loss needs model"):
        TrainConfig.from_dict({"objective": {"seg_loss": 1.0}})


@pytest.fixture(scope="module")
def pixel_pipeline(world, tmp_path_factory):
    """A tiny pixel-space UNet (cross-attending to the tiny base's 32-wide states) and its DDPM schedule."""
    from diffusers import DDPMScheduler

    folder = tmp_path_factory.mktemp("pipe")
    tiny.build_unet(0, cross_attention_dim=32, in_channels=3, out_channels=3, sample_size=16,
                    attention_head_dim=2).save_pretrained(folder / "unet")
    DDPMScheduler(num_train_timesteps=100).save_pretrained(folder / "scheduler")
    return str(folder)


def test_teacher_target_is_the_negative_prompt_route_written_out(pixel_pipeline, world):
    """out(A) - (1 - 1/g) (out(N) - out(empty)): with guidance g, a prompt predicting this gives the
    negative-prompt pipeline's guided prediction when the unconditional branch is the empty prompt."""
    den = FrozenDenoiser(pixel_pipeline, world["images"], torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    xt, t, _ = den.noisy(den.clean(["0.png", "1.png"]), g)
    a, n, e = (torch.randn(2, 5, 32, generator=g) for _ in range(3))
    target = den.teacher(xt, t, a, n, e, guidance=4.0)
    out_a, out_n, out_e = den.out(xt, t, a), den.out(xt, t, n), den.out(xt, t, e)
    torch.testing.assert_close(target, out_a - 0.75 * (out_n - out_e))
    # the pipeline's guided predictions agree: negative prompt N vs the swapped prompt with the empty prompt
    guided_negprompt = out_n + 4.0 * (out_a - out_n)
    guided_swapped = out_e + 4.0 * (target - out_e)
    torch.testing.assert_close(guided_swapped, guided_negprompt, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode,on_policy", [("teacher", False), ("teacher", True), ("denoise", False)])
def test_unet_loss_trains_the_tower_through_a_frozen_unet(world, pixel_pipeline, tmp_path, mode, on_policy):
    unet = {"weight": 1.0, "model": pixel_pipeline, "mode": mode, "on_policy": on_policy, "sample_steps": 3,
            "batch_size": 4}
    res = train(_cfg(world, tmp_path / mode, {"unet_loss": unet}, pipeline__length=16, optim__lr=1e-3, optim__steps=4,
                     run__save_every=4), progress=False, echo=None)
    entries = [e for e in res.log if "unet_loss" in e]
    assert len(entries) == 4 and all(np.isfinite(e["unet_loss"]) for e in entries)
    from transformers import CLIPModel

    tuned, base = CLIPModel.from_pretrained(res.model_dir), CLIPModel.from_pretrained(world["base"])
    assert not torch.equal(tuned.text_model.final_layer_norm.weight, base.text_model.final_layer_norm.weight)


def test_unet_inputs_are_checked_before_compute(world, tmp_path):
    with pytest.raises(InputError, match="objective.unet_loss: unet_loss needs model"):
        TrainConfig.from_dict({"objective": {"unet_loss": 1.0}})
    with pytest.raises(InputError, match="no unet/ folder"):
        train(_cfg(world, tmp_path / "x", {"unet_loss": {"weight": 1.0, "model": str(tmp_path)}}), progress=False,
              echo=None)


def test_on_policy_states_follow_the_teachers_own_sampler(pixel_pipeline, world):
    """Cut at the first step, a trajectory is its own starting noise at the first timestep; cut later, it is
    what the scheduler made of that noise under the teacher's guided prediction, step for step."""
    from diffusers import DDPMScheduler

    den = FrozenDenoiser(pixel_pipeline, world["images"], torch.device("cpu"))
    a, n = torch.randn(2, 5, 32), torch.randn(2, 5, 32)
    x, t = den.on_policy(a, n, 3.0, 1, torch.Generator().manual_seed(1))
    start = torch.randn((2, 3, 16, 16), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x, start)
    sched = DDPMScheduler.from_config(den.schedule.config)
    sched.set_timesteps(1)
    assert t.tolist() == [int(sched.timesteps[0])] * 2
    x2, t2 = den.on_policy(a, n, 3.0, 2, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    noise = torch.randn((2, 3, 16, 16), generator=g)
    stop = torch.randint(0, 2, (2,), generator=g)
    sched.set_timesteps(2)
    t0 = sched.timesteps[0]
    tt = torch.full((2,), int(t0))
    guided = den.out(noise, tt, n) + 3.0 * (den.out(noise, tt, a) - den.out(noise, tt, n))
    step1 = sched.step(guided, t0, noise, generator=g).prev_sample
    for i in range(2):
        torch.testing.assert_close(x2[i], noise[i] if stop[i] == 0 else step1[i])


def test_the_decoder_on_kept_activations_is_clipsegs_own_forward(world, tmp_path):
    """Two routes to the logits: CLIPSeg's forward with `conditional_embeddings`, and its decoder on the
    vision activations the segmenter keeps (read once, then from the cache)."""
    from transformers import AutoConfig, CLIPSegProcessor, CLIPTokenizer

    from negation_encoder.training.frozen_cache import FrozenCache

    cfg = _cfg(world, tmp_path / "x", {"seg_loss": _seg(world)})
    inputs = check_seg_inputs(cfg.objective["seg_loss"], AutoConfig.from_pretrained(world["base"]))
    seg = FrozenSegmenter(inputs, CLIPTokenizer.from_pretrained(world["base"]), torch.device("cpu"))
    rows = [3, 0, 7]
    cond = torch.randn(3, 24, generator=torch.Generator().manual_seed(0))
    first = seg.logits(seg.inputs(rows)[0], cond)  # read this step
    assert not seg.keep(FrozenCache(0.001)), "kept past its budget"
    assert seg.keep(FrozenCache(16))
    kept = seg.logits(seg.inputs(rows)[0], cond)  # read before the first step
    # kept activations were read in one batch of every record, these in a batch of three: compare in norm
    assert_close_in_norm(kept, first, rel=1e-5, what="kept against read this step")
    processor = CLIPSegProcessor.from_pretrained(world["clipseg"])
    images = [Image.open(Path(world["refs"]).parent / inputs.records[i].image).convert("RGB") for i in rows]
    pixels = processor.image_processor(images=images, return_tensors="pt").pixel_values
    with torch.no_grad():
        full = seg.model(pixel_values=pixels, conditional_embeddings=cond).logits
    torch.testing.assert_close(first, full.reshape(3, *full.shape[-2:]), rtol=1e-5, atol=1e-6)
    assert torch.equal(seg.inputs(rows)[1], seg.inputs(rows)[1]) and len(seg.kept) == len(inputs.records)


def test_seg_inputs_carry_each_records_other_mask(world, tmp_path):
    """The segmenter's inputs hold each record's other_mask as read from its PNG, an all-zero mask where the
    record names none; a missing other_mask file is caught before compute, naming the file and record."""
    from transformers import AutoConfig, CLIPTokenizer

    cfg = _cfg(world, tmp_path / "x", {"seg_loss": _seg(world, choice=1.0)})
    inputs = check_seg_inputs(cfg.objective["seg_loss"], AutoConfig.from_pretrained(world["base"]))
    seg = FrozenSegmenter(inputs, CLIPTokenizer.from_pretrained(world["base"]), torch.device("cpu"))
    acts, masks, others = seg.inputs(list(range(12)))
    assert others.shape == masks.shape == (12, 32, 32)
    root = Path(world["refs"]).parent
    for i, r in enumerate(inputs.records):
        expected = np.asarray(Image.open(root / r.other_mask)) > 0 if r.other_mask else np.zeros((32, 32), bool)
        assert torch.equal(others[i].bool(), torch.from_numpy(expected)), r.id
    assert sum(r.other_mask is not None for r in inputs.records) == 8
    plain = FrozenSegmenter(inputs, CLIPTokenizer.from_pretrained(world["base"]), torch.device("cpu"), others=False)
    assert plain.inputs(list(range(12)))[2] is None and torch.equal(plain.inputs(list(range(12)))[1], masks)
    res = train(_cfg(world, tmp_path / "run", {"seg_loss": _seg(world, choice=1.0, batch_size=4), "preserve": 1.0}),
                progress=False, echo=None)
    assert res.model_dir.is_dir()
    broken = tmp_path / "broken.jsonl"
    rec = json.loads(Path(world["refs"]).read_text().splitlines()[1])
    broken.write_text(json.dumps({**rec, "other_mask": "gone.png"}) + "\n")
    with pytest.raises(InputError, match=r"'gone.png' not found"):
        check_seg_inputs(_cfg(world, tmp_path / "y", {"seg_loss": _seg(world, data=[str(broken)], images=str(root))}
                              ).objective["seg_loss"], AutoConfig.from_pretrained(world["base"]))


@pytest.mark.parametrize("term", ["omit_pooled", "preserve_pooled"])
@pytest.mark.parametrize("family,slot", [("sdxl", "text_encoder_2"), ("flux", "text_encoder")])
def test_pooled_terms_are_the_pooled_mse_against_the_pipelines_reading_by_hand(world, tmp_path, family, slot, term):
    """omit_pooled's and preserve_pooled's values equal a hand computation through `conditioning.read_text` (which
    the pipeline tests hold equal to each pipeline's `encode_prompt`): the tower's pooled output, padded to the
    pipeline's length and read as the pipeline reads it (SDXL's second slot: projected; Flux: pooler_output,
    unprojected), of each negated caption (omit_pooled, the rows the splitter finds a negation in) or of each
    example's affirmative text (preserve_pooled, every row), against the base's of the affirmative part; with
    the tower moved, so the two readings differ."""
    from accelerate import Accelerator
    from transformers import CLIPModel

    from negation_encoder.conditioning import read_text
    from negation_encoder.image_cache import ImageEmbeddingCache
    from negation_encoder.training.checkpoints import RunDir
    from negation_encoder.training.checks import check_inputs
    from negation_encoder.training.setup import setup
    from negation_encoder.training.step import compute_loss

    cfg = _cfg(world, tmp_path / "op", {"mcq": 1.0, term: 1.0}, pipeline__length=16, pipeline__family=family,
               pipeline__slot=slot, optim__steps=1, run__save_every=1)
    how = cfg.pipeline.reading()
    acc, run = Accelerator(cpu=True), RunDir(cfg.run.out)
    state = setup(cfg, check_inputs(cfg, acc, run, False, False, None), acc, run, ImageEmbeddingCache(tmp_path / "cache"),
                  progress=False)
    tok = tiny.build_clip_tokenizer()
    examples = [state.examples[i] for i in state.batch(0, 0).example_index.tolist()]
    with torch.no_grad():
        for p in state.params:
            p.add_(0.01 * torch.randn_like(p))
        batch = state.batch(0, 0)
        _, parts = compute_loss(state, batch)
        rows = [i for i, ex in enumerate(examples) if term in ex.eligible]
        assert rows and (term == "omit_pooled" or len(rows) == len(examples))

        def pooled(text_model, projection, texts):
            enc = tok(texts, padding="max_length", max_length=16, return_tensors="pt")
            return read_text(text_model, projection, enc.input_ids, enc.attention_mask, how)[1]

        affirmative = [examples[i].affirmative or examples[i].positive for i in rows]
        read = [examples[i].positive for i in rows] if term == "omit_pooled" else affirmative
        mine = pooled(state.tower.text_model, state.tower.text_projection, read)
        base = CLIPModel.from_pretrained(world["base"]).eval()
        target = pooled(base.text_model, base.text_projection, affirmative)
    assert how.pooled == ("projected" if family == "sdxl" else "pooler") and mine.shape[-1] == (
        base.config.projection_dim if family == "sdxl" else base.config.text_config.hidden_size)
    assert parts[term].item() == pytest.approx(((mine - target) ** 2).mean().item(), rel=1e-4)


def test_omit_pooled_is_refused_for_a_pipeline_that_reads_no_pooled_output(world, tmp_path):
    from negation_encoder.errors import ConfigError

    cfg = _cfg(world, tmp_path / "bad", {"mcq": 1.0, "omit_pooled": 1.0}, pipeline__family="sd1")
    with pytest.raises(ConfigError, match="omit_pooled trains the pooled output a pipeline reads, and a sd1 pipeline "
                                          "reads none from its text_encoder"):
        train(cfg, progress=False, echo=None)
    assert not (tmp_path / "bad" / "model").exists()
