"""Swapping encoders into tiny SD 1.x / SDXL pipelines and CLIPSeg through the public API."""

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from integrations import (
    encode_prompt_clip_skip,
    generate,
    load_negation_text_encoder,
    negation_pipeline,
    swap_clipseg_text_encoder,
    swap_text_encoders,
)
from negation_encoder.checkpoint.export import export_checkpoint
from negation_encoder.errors import IncompatibleModelError
from negation_encoder.testing import tiny


def _run(pipe, **kw):
    kw.setdefault("prompt", "a street with no cars")
    return pipe(num_inference_steps=2, height=32, width=32, output_type="np",
                generator=torch.Generator().manual_seed(0), **kw).images


@pytest.fixture()
def sd():
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(**tiny.build_sd_components(seed=0), requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory):
    """A checkpoint folder (docs/design.md layout) holding a text tower of SD-tiny's size, other weights."""
    tok = tiny.build_clip_tokenizer()
    clip = tiny.build_clip_model(seed=9, tokenizer=tok, projection_dim=24)
    out = tmp_path_factory.mktemp("enc") / "encoder"
    export_checkpoint(clip, tok, tiny.build_clip_image_processor(32), out, training_config={"base": "tiny"})
    return out


def test_swapping_in_the_original_encoder_is_bit_identical(sd):
    before = _run(sd)
    swap_text_encoders(sd, text_encoder=copy.deepcopy(sd.text_encoder))
    assert np.array_equal(_run(sd), before)


def test_swapped_encoder_matches_its_own_prompt_embeds(sd, encoder_folder):
    te = load_negation_text_encoder(str(encoder_folder), "text_encoder")
    before = _run(sd)
    swap_text_encoders(sd, text_encoder=te)
    assert sd.text_encoder is te
    after = _run(sd)
    assert not np.allclose(after, before)
    ids = sd.tokenizer(["a street with no cars"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    neg = sd.tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        embeds, neg_embeds = te(ids)[0], te(neg)[0]
    via_embeds = _run(sd, prompt=None, prompt_embeds=embeds, negative_prompt_embeds=neg_embeds)
    np.testing.assert_allclose(after, via_embeds, atol=1e-5, err_msg="passing prompt_embeds changed the output")


def test_wrong_size_encoder_names_both_sizes(sd):
    wide = tiny.build_clip_text_model(seed=0, text_hidden_size=48)
    with pytest.raises(IncompatibleModelError, match="hidden size 48 does not match the UNet's cross_attention_dim 32"):
        swap_text_encoders(sd, text_encoder=wide)
    small_vocab = tiny.build_clip_text_model(seed=0, tokenizer=tiny.build_clip_tokenizer(["a"]))
    with pytest.raises(IncompatibleModelError, match=r"vocabulary of \d+ tokens but the pipeline's tokenizer has \d+"):
        swap_text_encoders(sd, text_encoder=small_vocab)


def test_clip_skip_matches_hand_reference(sd):
    prompt = "a dog without a hat"
    ids = sd.tokenizer([prompt], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        out = sd.text_encoder(ids, output_hidden_states=True)
        # by hand: layer outputs are hidden_states[1:]; clip_skip=1 is the penultimate layer, then final LN
        ln = sd.text_encoder.final_layer_norm
        reference = torch.nn.functional.layer_norm(out.hidden_states[-2], ln.normalized_shape, ln.weight, ln.bias, ln.eps)
        assert torch.allclose(ln(out.hidden_states[-1]), out.last_hidden_state, atol=1e-6)
    torch.testing.assert_close(encode_prompt_clip_skip(sd, [prompt], 1), reference)
    images = generate(sd, prompt, clip_skip=1, num_inference_steps=2, height=32, width=32, output_type="np",
                      generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (1, 32, 32, 3)
    plain = generate(sd, prompt, num_inference_steps=2, height=32, width=32, output_type="np",
                     generator=torch.Generator().manual_seed(0)).images
    assert not np.allclose(images, plain)


def test_sdxl_swap_both_encoders_and_checks(tmp_path):
    from diffusers import StableDiffusionXLPipeline

    comps = tiny.build_sdxl_components(seed=0)
    pipe = StableDiffusionXLPipeline(**comps)
    pipe.set_progress_bar_config(disable=True)
    before = _run(pipe)
    swap_text_encoders(pipe, copy.deepcopy(pipe.text_encoder), copy.deepcopy(pipe.text_encoder_2))
    assert np.array_equal(_run(pipe), before)
    new2 = tiny.build_clip_text_model_with_projection(seed=3, text_hidden_size=32, projection_dim=32)
    swap_text_encoders(pipe, text_encoder_2=new2)
    assert not np.allclose(_run(pipe), before)
    with pytest.raises(IncompatibleModelError, match=r"widths 32 \+ 48 = 80 do not match the UNet's cross_attention_dim 64"):
        swap_text_encoders(pipe, text_encoder_2=tiny.build_clip_text_model_with_projection(seed=0, text_hidden_size=48, projection_dim=32))


def test_negation_pipeline_one_call_from_folders(tmp_path, encoder_folder):
    from diffusers import StableDiffusionPipeline

    base = StableDiffusionPipeline(**tiny.build_sd_components(seed=0), requires_safety_checker=False)
    base.save_pretrained(tmp_path / "sd")
    pipe = negation_pipeline(str(tmp_path / "sd"), str(encoder_folder), safety_checker=None,
                             requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    ref = load_negation_text_encoder(str(encoder_folder))
    for k, v in ref.state_dict().items():
        assert torch.equal(pipe.text_encoder.state_dict()[k], v), k
    assert _run(pipe).shape == (1, 32, 32, 3)


def _seg_inputs():
    tok = tiny.build_clip_tokenizer()
    enc = tok(["a dog without a hat", "the cup that is not red"], padding=True, return_tensors="pt")
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(2)]
    pix = tiny.build_clip_image_processor(32)(images=imgs, return_tensors="pt").pixel_values
    return dict(input_ids=enc.input_ids, attention_mask=enc.attention_mask, pixel_values=pix)


def test_clipseg_swap_identity_change_and_reload(tmp_path):
    from transformers import CLIPSegForImageSegmentation, CLIPTextModelWithProjection

    seg = tiny.build_clipseg(seed=0)
    inputs = _seg_inputs()
    with torch.no_grad():
        before = seg(**inputs).logits
    original = tiny.build_clip_text_model_with_projection(seed=1, projection_dim=seg.config.projection_dim)
    assert isinstance(original, CLIPTextModelWithProjection)
    original.text_model.load_state_dict(seg.clip.text_model.state_dict())
    original.text_projection.load_state_dict(seg.clip.text_projection.state_dict())
    swap_clipseg_text_encoder(seg, original)
    with torch.no_grad():
        assert torch.equal(seg(**inputs).logits, before)
    vision = {k: v.clone() for k, v in seg.state_dict().items() if not k.startswith(("clip.text_model", "clip.text_projection"))}
    swap_clipseg_text_encoder(seg, tiny.build_clip_model(seed=4))  # same sizes: text 32, projection 24
    with torch.no_grad():
        after = seg(**inputs).logits
    assert not torch.allclose(after, before)
    for k, v in vision.items():
        assert torch.equal(seg.state_dict()[k], v), f"{k} changed"
    seg.save_pretrained(tmp_path / "seg")
    again = CLIPSegForImageSegmentation.from_pretrained(tmp_path / "seg").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**inputs).logits, after)
    with pytest.raises(IncompatibleModelError, match="width 48.*CLIPSeg \\(width 32"):
        swap_clipseg_text_encoder(seg, tiny.build_clip_model(seed=0, text_hidden_size=48))
    with pytest.raises(IncompatibleModelError, match="should be CLIPModel or CLIPTextModelWithProjection"):
        swap_clipseg_text_encoder(seg, tiny.build_clip_text_model())


def test_sd3_clip_encoders_swap_without_t5(tmp_path):
    """SD3 builds from tiny components offline with text_encoder_3=None (the pipeline zero-fills T5)."""
    pipe = tiny.build_sd3_pipeline(seed=0)
    tok, te1, te2 = pipe.tokenizer, pipe.text_encoder, pipe.text_encoder_2
    before = _run(pipe)
    swap_text_encoders(pipe, copy.deepcopy(te1), copy.deepcopy(te2))
    assert np.array_equal(_run(pipe), before)
    swap_text_encoders(pipe, text_encoder=tiny.build_clip_text_model_with_projection(seed=7, tokenizer=tok, projection_dim=32))
    assert not np.allclose(_run(pipe), before)
    with pytest.raises(IncompatibleModelError, match=r"projections 24 \+ 32 = 56 do not match the SD3 transformer's pooled_projection_dim 64"):
        swap_text_encoders(pipe, text_encoder=tiny.build_clip_text_model_with_projection(seed=0, tokenizer=tok))


def test_flux_clip_encoder_swap():
    """Flux builds from tiny components offline (a word-level T5 tokenizer and a tiny T5 encoder)."""
    pipe = tiny.build_flux_pipeline(seed=0)
    tok, te = pipe.tokenizer, pipe.text_encoder
    before = _run(pipe, max_sequence_length=16)
    again = _run(pipe, max_sequence_length=16)
    swap_text_encoders(pipe, text_encoder=copy.deepcopy(te))
    swapped = _run(pipe, max_sequence_length=16)
    # this tiny Flux build is not bit-reproducible run to run on CPU (two identical calls differ by
    # ~3e-4), so the original encoder's swap is checked against that noise, a different one beyond it
    noise = max(np.abs(again - before).max(), 1e-6)
    assert np.abs(swapped - before).max() <= 3 * noise
    swap_text_encoders(pipe, text_encoder=tiny.build_clip_text_model(seed=5, tokenizer=tok))
    assert np.abs(_run(pipe, max_sequence_length=16) - before).max() > 10 * noise
    with pytest.raises(IncompatibleModelError, match="hidden size 48 does not match the Flux transformer's pooled_projection_dim 32"):
        swap_text_encoders(pipe, text_encoder=tiny.build_clip_text_model(seed=0, tokenizer=tok, text_hidden_size=48))
    with pytest.raises(IncompatibleModelError, match="T5 encoder"):
        swap_text_encoders(pipe, text_encoder_2=tiny.build_clip_text_model_with_projection(seed=0, tokenizer=tok))


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_negation_pipeline_fills_every_clip_slot_with_its_class(family, tmp_path):
    """SD3 holds CLIPTextModelWithProjection in both CLIP slots, Flux a CLIPTextModel beside its T5: the one
    call loads the negation encoder into each CLIP slot in the class that slot holds, and leaves T5 alone."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    pipe = tiny.build_sd3_pipeline(seed=0) if family == "sd3" else tiny.build_flux_pipeline(seed=0)
    pipe.save_pretrained(tmp_path / "base")
    tok = tiny.build_clip_tokenizer()
    enc = tmp_path / "enc"
    export_checkpoint(tiny.build_clip_model(seed=3, tokenizer=tok, projection_dim=32), tok,
                      tiny.build_clip_image_processor(32), enc)
    extra = {"text_encoder_3": None, "tokenizer_3": None} if family == "sd3" else {}  # the tiny SD3 has no T5
    loaded = negation_pipeline(str(tmp_path / "base"), str(enc), **extra)
    if family == "sd3":
        assert type(loaded.text_encoder) is CLIPTextModelWithProjection
        assert type(loaded.text_encoder_2) is CLIPTextModelWithProjection
        ref = load_negation_text_encoder(str(enc), "text_encoder_2")
        assert torch.equal(loaded.text_encoder_2.text_projection.weight, ref.text_projection.weight)
    else:
        assert type(loaded.text_encoder) is CLIPTextModel
        assert type(loaded.text_encoder_2).__name__ == "T5EncoderModel"
    ref = load_negation_text_encoder(str(enc), "text_encoder_2" if family == "sd3" else "text_encoder")
    got = loaded.text_encoder.state_dict()
    assert all(torch.equal(got[k], v) for k, v in ref.state_dict().items())
