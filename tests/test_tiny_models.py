"""Every tiny builder: deterministic, sized by its config (shapes derived from it), and the pipelines and
judges the tests load from folders reload offline to the same outputs."""

import numpy as np
import pytest
import torch
from PIL import Image

from negation_encoder.testing import tiny


def _same_params(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"parameter {k} differs"


def _image(seed=0, size=32):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    "builder,cls_name",
    [
        (tiny.build_clip_model, "CLIPModel"),
        (tiny.build_clip_text_model, "CLIPTextModel"),
        (tiny.build_clip_text_model_with_projection, "CLIPTextModelWithProjection"),
        (tiny.build_clipseg, "CLIPSegForImageSegmentation"),
    ],
)
def test_clip_family_deterministic_and_sized_by_config(builder, cls_name):
    a, b = builder(seed=3), builder(seed=3)
    _same_params(a, b)
    assert type(a).__name__ == cls_name
    loaded = a

    tok = tiny.build_clip_tokenizer()
    enc = tok(["a dog on the street", "no cars"], padding=True, return_tensors="pt")
    pixel_values = tiny.build_clip_image_processor(32)(images=[_image(0), _image(1)], return_tensors="pt").pixel_values
    with torch.no_grad():
        if cls_name == "CLIPModel":
            out = loaded(input_ids=enc.input_ids, attention_mask=enc.attention_mask, pixel_values=pixel_values)
            assert out.logits_per_image.shape == (2, 2)
            assert out.text_embeds.shape == (2, loaded.config.projection_dim)
        elif cls_name == "CLIPTextModel":
            out = loaded(**enc)
            assert out.last_hidden_state.shape == (2, enc.input_ids.shape[1], loaded.config.hidden_size)
        elif cls_name == "CLIPTextModelWithProjection":
            assert loaded(**enc).text_embeds.shape == (2, loaded.config.projection_dim)
        else:
            out = loaded(input_ids=enc.input_ids, attention_mask=enc.attention_mask, pixel_values=pixel_values)
            assert out.logits.shape == (2, 32, 32)


def test_different_seeds_give_different_weights():
    a, b = tiny.build_clip_model(seed=0), tiny.build_clip_model(seed=1)
    assert not torch.equal(a.text_projection.weight, b.text_projection.weight)


def _run_pipeline(pipe):
    out = pipe("a dog without a hat", num_inference_steps=2, height=32, width=32, output_type="np",
               generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (1, 32, 32, 3)
    assert np.isfinite(out.images).all()
    return out.images


def test_sd_components_save_reload_two_steps(tmp_path):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(**tiny.build_sd_components(seed=0), requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    first = _run_pipeline(pipe)
    pipe.save_pretrained(tmp_path)
    again = StableDiffusionPipeline.from_pretrained(tmp_path, safety_checker=None, requires_safety_checker=False)
    again.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(_run_pipeline(again), first, atol=1e-5)


def test_sdxl_components_save_reload_two_steps(tmp_path):
    from diffusers import StableDiffusionXLPipeline

    comps = tiny.build_sdxl_components(seed=0)
    unet = comps["unet"]
    assert unet.config.cross_attention_dim == (
        comps["text_encoder"].config.hidden_size + comps["text_encoder_2"].config.hidden_size
    )
    pipe = StableDiffusionXLPipeline(**comps)
    pipe.set_progress_bar_config(disable=True)
    first = _run_pipeline(pipe)
    pipe.save_pretrained(tmp_path)
    again = StableDiffusionXLPipeline.from_pretrained(tmp_path)
    again.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(_run_pipeline(again), first, atol=1e-5)


def test_blip_vqa_judge_save_reload_forward(tmp_path):
    from transformers import BlipForQuestionAnswering, BlipProcessor

    model, processor = tiny.build_blip_vqa(seed=0)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = BlipForQuestionAnswering.from_pretrained(tmp_path).eval()
    proc2 = BlipProcessor.from_pretrained(tmp_path)
    _same_params(model, loaded)
    inputs = proc2(images=_image(), text="is there a dog?", return_tensors="pt")
    with torch.no_grad():
        out = loaded.generate(**inputs, max_new_tokens=3)
    assert out.ndim == 2 and out.shape[0] == 1
