"""The training-free route: `negation_kwargs` on tiny SD 1.x, SDXL, SD3 and Flux pipelines built offline,
stacked with a swapped encoder, and CLIPSeg's split route against a hand computation."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

from integrations import NegativePromptIgnored, SplitRoute, negation_kwargs, segment, swap_text_encoders
from negation_encoder.errors import InputError
from negation_encoder.testing import tiny


def _run(pipe, **kw):
    extra = {"max_sequence_length": 16} if "FluxPipeline" in type(pipe).__name__ else {}
    return pipe(num_inference_steps=2, height=32, width=32, output_type="np",
                generator=torch.Generator().manual_seed(0), **extra, **kw).images


def _sd():
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(**tiny.build_sd_components(seed=0), requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sdxl():
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(**tiny.build_sdxl_components(seed=0))
    pipe.set_progress_bar_config(disable=True)
    return pipe


FAMILIES = {"sd": _sd, "sdxl": _sdxl, "sd3": tiny.build_sd3_pipeline, "flux": tiny.build_flux_pipeline}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_negation_kwargs_splits_once_and_equals_the_hand_written_call(family):
    pipe = FAMILIES[family]()
    kw = negation_kwargs(pipe, "a street with no cars", negative_prompt="blurry")
    assert kw["prompt"] == "a street" and kw["negative_prompt"] == "blurry, cars"
    hand = {"prompt": "a street", "negative_prompt": "blurry, cars"}
    if family == "flux":
        assert kw["true_cfg_scale"] == 4.0  # Flux reads negative_prompt only with true CFG on
        hand["true_cfg_scale"] = 4.0
    else:
        assert "true_cfg_scale" not in kw and "guidance_scale" not in kw  # their defaults already are > 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", NegativePromptIgnored)
        got = _run(pipe, **kw)
    ref = _run(pipe, **hand)
    if family == "flux":  # this tiny Flux is not bit-reproducible run to run on CPU (~3e-4, x true CFG)
        np.testing.assert_allclose(got, ref, atol=2e-2)
    else:
        assert np.array_equal(got, ref)
    plain = negation_kwargs(pipe, ["a dog", "a dog without a hat"])
    assert plain["prompt"] == ["a dog", "a dog"] and plain["negative_prompt"] == ["", "hat"]
    assert negation_kwargs(pipe, "a red car") == {"prompt": "a red car"}  # nothing negated: unchanged
    # a cue the splitter cannot scope (`NegationSplit.unsure`): the prompt goes as written, no negative prompt
    assert negation_kwargs(pipe, "a room with nobody except a guard") == {"prompt": "a room with nobody except a guard"}


def test_keep_prompt_gives_a_t5_the_affirmative_part():
    """Stacked on Flux, the swapped CLIP reads the prompt as written; the T5 beside it (`prompt_2`), never
    taught "no", gets the affirmative part. Pipelines without a T5 (SD, SDXL's CLIP-G `prompt_2`) get no
    extra prompt."""
    flux = tiny.build_flux_pipeline()
    kw = negation_kwargs(flux, ["a street with no cars", "a red car"], keep_prompt=True)
    assert kw["prompt"] == ["a street with no cars", "a red car"] and kw["prompt_2"] == ["a street", "a red car"]
    assert kw["negative_prompt"] == ["cars", ""] and kw["true_cfg_scale"] > 1
    assert "prompt_2" not in negation_kwargs(flux, "a street with no cars")  # plain route: one stripped prompt
    assert "prompt_2" not in negation_kwargs(flux, "a red car", keep_prompt=True)  # nothing negated
    for build in (_sd, _sdxl, tiny.build_sd3_pipeline):  # no T5 (the tiny SD3 has none)
        assert set(negation_kwargs(build(), "a street with no cars", keep_prompt=True)) == {"prompt",
                                                                                             "negative_prompt"}
    sd3 = tiny.build_sd3_pipeline()
    sd3.text_encoder_3 = flux.text_encoder_2  # an SD3 with its T5: that one reads `prompt_3`
    assert negation_kwargs(sd3, "a street with no cars", keep_prompt=True)["prompt_3"] == "a street"


def test_eval_t2i_stacked_arm_sends_what_the_route_sends(monkeypatch):
    """eval_t2i's swapped+negprompt arm on Flux: the call `generate` makes carries the prompt as written,
    the T5's affirmative part and the negative prompt, as `negation_kwargs(..., keep_prompt=True)` does."""
    import functools

    from eval_t2i.generation import GenerationConfig, generate
    from eval_t2i.negscore import NegScoreConfig, build_jobs
    from eval_t2i.prompts import PromptItem

    item = PromptItem(id="s", prompt="a street with no cars", subject="street", negated_concepts=("cars",),
                      negation_type="object", cue="no", questions=("Is there a street?", "Is there a car?"))
    jobs = build_jobs([item], NegScoreConfig(seeds=(0,), arms=("base+negprompt", "swapped+negprompt")))
    assert [(j.prompt, j.negative_prompt, j.t5_prompt) for j in jobs] == [
        ("a street", "cars", None), ("a street with no cars", "cars", "a street")]
    flux = tiny.build_flux_pipeline()
    sent = []
    original = type(flux).__call__

    @functools.wraps(original)
    def spy(self, *args, **kwargs):
        sent.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(flux), "__call__", spy)
    stacked = jobs[1]
    generate(flux, [stacked.prompt], [stacked.negative_prompt], [0], GenerationConfig(steps=1, height=32, width=32),
             t5_prompts=[stacked.t5_prompt])
    route = negation_kwargs(flux, [item.prompt], keep_prompt=True)
    assert {k: sent[0][k] for k in route} == route


def test_flux_negative_prompt_changes_the_image_only_with_true_cfg():
    pipe = tiny.build_flux_pipeline()
    base = _run(pipe, prompt="a street")
    again = _run(pipe, prompt="a street")
    noise = max(np.abs(again - base).max(), 1e-6)
    with pytest.warns(NegativePromptIgnored, match="true_cfg_scale > 1"):
        off = negation_kwargs(pipe, "a street with no cars", true_cfg_scale=1.0)
    assert np.abs(_run(pipe, **off) - base).max() <= 3 * noise, "true_cfg_scale 1 must ignore the negative prompt"
    on = negation_kwargs(pipe, "a street with no cars")
    assert np.abs(_run(pipe, **on) - base).max() > 10 * noise, "true CFG on: the negative prompt must act"


@pytest.mark.parametrize("family", ["sd", "sd3"])
def test_guidance_at_or_below_one_warns_in_one_line(family):
    pipe = FAMILIES[family]()
    with pytest.warns(NegativePromptIgnored) as caught:
        kw = negation_kwargs(pipe, "a street with no cars", guidance_scale=1.0)
    assert kw["guidance_scale"] == 1.0
    assert len(caught) == 1 and "\n" not in str(caught[0].message) and "guidance_scale 1.0" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NegativePromptIgnored)
        negation_kwargs(pipe, "a red car", guidance_scale=1.0)  # no negative prompt: nothing to warn about


def test_stacking_with_a_swapped_encoder_is_the_same_call_on_the_swapped_pipeline():
    pipe = _sd()
    swapped = copy.deepcopy(pipe)
    swap_text_encoders(swapped, text_encoder=tiny.build_clip_text_model(seed=7, tokenizer=pipe.tokenizer))
    kw = negation_kwargs(swapped, "a street with no cars")
    stacked = _run(swapped, **kw)
    assert np.array_equal(stacked, _run(swapped, prompt="a street", negative_prompt="cars"))
    assert not np.array_equal(stacked, _run(pipe, **kw)), "the swapped encoder changed nothing"
    assert not np.array_equal(stacked, _run(swapped, prompt="a street with no cars")), "the route changed nothing"
    # keep_prompt (how a negation encoder is stacked): the prompt as written, the negated concept added
    kept = negation_kwargs(swapped, ["a street with no cars", "a red car"], negative_prompt="blurry", keep_prompt=True)
    assert kept["prompt"] == ["a street with no cars", "a red car"]
    assert kept["negative_prompt"] == ["blurry, cars", "blurry"]
    assert np.array_equal(_run(swapped, **negation_kwargs(swapped, "a street with no cars", keep_prompt=True)),
                          _run(swapped, prompt="a street with no cars", negative_prompt="cars"))


def test_negative_prompt_list_must_match_prompts():
    with pytest.raises(InputError, match="2 given for 1 prompts"):
        negation_kwargs(_sd(), ["a dog"], negative_prompt=["x", "y"])


# ------------------------------------------------------------------------------------------------ CLIPSeg


def _seg():
    model = tiny.build_clipseg(seed=0)
    tok = tiny.build_clip_tokenizer()
    from transformers import CLIPSegProcessor, ViTImageProcessor

    proc = CLIPSegProcessor(image_processor=ViTImageProcessor(do_resize=False, size={"height": 32, "width": 32}),
                            tokenizer=tok)
    return model, proc


def _images(n):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(n)]


def test_split_route_equals_the_rule_written_out():
    model, proc = _seg()
    images = _images(3)
    texts = ["a dog without a hat", "a red car", "a street with no cars or buses"]
    route = SplitRoute(weight=0.75)
    got = segment(model, proc, images, texts, route="split", split_route=route)

    def probs(image, text):
        with torch.no_grad():
            return torch.sigmoid(model(**proc(text=[text], images=[image], return_tensors="pt")).logits[0])

    for i, (aff, negs) in enumerate([("a dog", ["hat"]), (None, []), ("a street", ["cars", "buses"])]):
        if aff is None:
            ref = probs(images[i], texts[i])
        else:
            pa = probs(images[i], aff)
            pn = torch.stack([probs(images[i], f"the {c}") for c in negs]).amax(0)
            kept = pa * (1 - pn / pn.max()).clamp_min(0) ** 0.75
            ref = kept * pa.max() / kept.max()
        torch.testing.assert_close(got[i], ref, atol=1e-5, rtol=1e-4)
    plain = segment(model, proc, images, texts, route="plain")
    torch.testing.assert_close(plain[1], got[1])  # no negation: the split route segments the text as is
    with pytest.raises(InputError, match="route must be one of plain, split"):
        segment(model, proc, images, texts, route="product")


def test_split_route_fit_picks_the_best_weight_and_round_trips(tmp_path):
    torch.manual_seed(0)
    masks = torch.zeros(4, 8, 8, dtype=torch.bool)
    masks[:, :4] = True  # the referred object: the top half
    p_aff = torch.full((4, 8, 8), 0.45)  # "the cup" lights both cups a little
    p_neg = torch.zeros(4, 8, 8)
    p_neg[:, 4:] = 0.9  # the excluded object: the bottom half
    route = SplitRoute.fit_on(p_aff, p_neg, masks, grid=(0.0, 1.0), threshold=0.3)
    assert route.weight == 1.0 and route.fit["iou_by_weight"]["1.0"] > route.fit["iou_by_weight"]["0.0"]
    route.save(tmp_path)
    assert SplitRoute.load(tmp_path) == route
    with pytest.raises(FileNotFoundError, match="negation_split_route.json"):
        SplitRoute.load(tmp_path / "none")
