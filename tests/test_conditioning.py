"""What the trainer treats as "what the pipeline reads" is, bit for bit, what each pipeline's own
`encode_prompt` returns for the same prompt and encoder: the tower's padded states at the reading's layer
(the states terms and unet_loss train these) and the pooled outputs (`conditioning.read_text`)."""

from __future__ import annotations

import pytest
import torch

from negation_encoder.conditioning import Reading, read_text, reading
from negation_encoder.errors import ConfigError
from negation_encoder.testing import tiny
from negation_encoder.training.tower import TextTower

PROMPT = ["a street with no cars", "a dog without a hat on a car"]


def _sd():
    from diffusers import StableDiffusionPipeline

    parts = tiny.build_sd_components(seed=0)
    parts["text_encoder"] = tiny.build_clip_text_model(0, parts["tokenizer"], text_layers=4)  # room for clip_skip 2
    pipe = StableDiffusionPipeline(**parts, requires_safety_checker=False)
    # diffusers' clip_skip path still names transformers 4's nested `text_encoder.text_model`; transformers 5's
    # CLIPTextModel is flat. Point the old name at the model itself (outside the module tree), so the
    # pipeline's own encode_prompt runs as written.
    object.__setattr__(pipe.text_encoder, "text_model", pipe.text_encoder)
    return pipe


def _sdxl():
    """A tiny SDXL whose towers (widths 32 and 24) have 4 layers, deep enough for clip_skip 2."""
    from diffusers import StableDiffusionXLPipeline

    parts = tiny.build_sdxl_components(seed=0, text_hidden_size=32, text_hidden_size_2=24, projection_dim=32)
    tok = parts["tokenizer"]
    parts["text_encoder"] = tiny.build_clip_text_model(0, tok, text_hidden_size=32, text_layers=4)
    parts["text_encoder_2"] = tiny.build_clip_text_model_with_projection(1, tok, text_hidden_size=24, text_layers=4,
                                                                         projection_dim=32)
    return StableDiffusionXLPipeline(**parts)


def _tokens(tokenizer, how: Reading):
    enc = tokenizer(PROMPT, padding="max_length", max_length=how.length, truncation=True, return_tensors="pt")
    return enc.input_ids, enc.attention_mask


def _trainer_reads(encoder, tokenizer, how: Reading) -> tuple[torch.Tensor, torch.Tensor]:
    """(the states the trainer's tower gives a padded-states request, the projected pooled output), through
    the trainer's own `TextTower` as `PaddedRows` requests them."""
    text_model = getattr(encoder, "text_model", encoder)
    projection = getattr(encoder, "text_projection", torch.nn.Identity())
    tower = TextTower(text_model, projection, torch.nn.Parameter(torch.zeros(())), False).eval()
    ids, mask = _tokens(tokenizer, how)
    with torch.no_grad():
        (enc,) = tower([(ids, mask if how.attention_mask else None, how.states_layer, how.final_norm)])
    return enc.hidden, enc.projected


@pytest.mark.parametrize("family", ["sd1", "sd2"])
@pytest.mark.parametrize("clip_skip", [None, 1, 2])
def test_sd_reading_is_what_encode_prompt_returns(family, clip_skip):
    pipe = _sd()
    with torch.no_grad():
        expected, _ = pipe.encode_prompt(PROMPT, "cpu", 1, False, clip_skip=clip_skip)
    how = reading(family, clip_skip=clip_skip, length=pipe.tokenizer.model_max_length)
    states, _ = _trainer_reads(pipe.text_encoder, pipe.tokenizer, how)
    assert torch.equal(states, expected), f"{family} clip_skip={clip_skip}"


def test_a_wrong_layer_fails_the_check():
    """The check has teeth: SDXL's reading (the penultimate layer, no norm) is not what SD 1.x reads."""
    pipe = _sd()
    with torch.no_grad():
        expected, _ = pipe.encode_prompt(PROMPT, "cpu", 1, False)
    wrong, _ = _trainer_reads(pipe.text_encoder, pipe.tokenizer, reading("sdxl", length=pipe.tokenizer.model_max_length))
    assert not torch.allclose(wrong, expected, atol=1e-3)
    masked, _ = _trainer_reads(pipe.text_encoder, pipe.tokenizer, reading("if", length=pipe.tokenizer.model_max_length))
    assert not torch.allclose(masked, expected, atol=1e-3), "SD 1.x reads the padding without the mask"


@pytest.mark.parametrize("clip_skip", [None, 1, 2])
def test_sdxl_reading_is_what_encode_prompt_returns_for_each_tower(clip_skip):
    pipe = _sdxl()
    with torch.no_grad():
        expected, _, pooled, _ = pipe.encode_prompt(PROMPT, device="cpu", num_images_per_prompt=1,
                                                    do_classifier_free_guidance=False, clip_skip=clip_skip)
    width_1 = pipe.text_encoder.config.hidden_size
    first = reading("sdxl", "text_encoder", clip_skip, pipe.tokenizer.model_max_length)
    states_1, _ = _trainer_reads(pipe.text_encoder, pipe.tokenizer, first)
    assert torch.equal(states_1, expected[..., :width_1])
    second = reading("sdxl", "text_encoder_2", clip_skip, pipe.tokenizer_2.model_max_length)
    states_2, projected = _trainer_reads(pipe.text_encoder_2, pipe.tokenizer_2, second)
    assert torch.equal(states_2, expected[..., width_1:])
    assert second.pooled == "projected" and torch.equal(projected, pooled), "SDXL's text_embeds"


def test_sd3_reading_is_what_encode_prompt_returns_for_each_clip_tower():
    pipe = tiny.build_sd3_pipeline(seed=0)
    with torch.no_grad():
        expected, _, pooled, _ = pipe.encode_prompt(PROMPT, PROMPT, PROMPT, device="cpu", num_images_per_prompt=1,
                                                    do_classifier_free_guidance=False)
    start, pooled_start = 0, 0
    for slot, encoder, tokenizer in (("text_encoder", pipe.text_encoder, pipe.tokenizer),
                                     ("text_encoder_2", pipe.text_encoder_2, pipe.tokenizer_2)):
        how = reading("sd3", slot, length=tokenizer.model_max_length)
        states, projected = _trainer_reads(encoder, tokenizer, how)
        width, proj = states.shape[-1], projected.shape[-1]
        assert torch.equal(states, expected[:, : how.length, start: start + width]), slot
        assert torch.equal(projected, pooled[:, pooled_start: pooled_start + proj]), slot
        start, pooled_start = start + width, pooled_start + proj


def test_flux_reads_the_clip_pooler_output_only():
    pipe = tiny.build_flux_pipeline(seed=0)
    with torch.no_grad():
        _, pooled, _ = pipe.encode_prompt(PROMPT, PROMPT, device="cpu", num_images_per_prompt=1)
    how = reading("flux", length=pipe.tokenizer.model_max_length)
    assert how.states_layer is None and how.pooled == "pooler"
    ids, mask = _tokens(pipe.tokenizer, how)
    with torch.no_grad():
        states, mine, _ = read_text(pipe.text_encoder, None, ids, mask, how)
    assert states is None and torch.equal(mine, pooled)


def test_a_loaded_pipeline_names_its_reading():
    from integrations import pipeline_family, pipeline_reading

    assert pipeline_family(_sd()) == "sd1" and pipeline_family(tiny.build_flux_pipeline()) == "flux"
    assert pipeline_reading(_sdxl(), "text_encoder_2", clip_skip=1) == Reading(
        states_layer=-3, final_norm=False, length=_sdxl().tokenizer_2.model_max_length, pooled="projected")


def test_readings_refuse_what_a_family_cannot_do():
    with pytest.raises(ConfigError, match="a sd1 pipeline has no CLIP slot 'text_encoder_2'"):
        reading("sd1", "text_encoder_2")
    with pytest.raises(ConfigError, match="clip_skip has no meaning for a flux pipeline"):
        reading("flux", clip_skip=1)
    with pytest.raises(ConfigError, match="pipeline family must be one of"):
        reading("sd5")


def test_states_terms_need_a_pipeline_that_reads_states(tmp_path):
    """omit_states on a Flux encoder would train states Flux never reads: refused before compute."""
    from negation_encoder.training import TrainConfig, train

    from ._tiny_world import make_tiny_world

    world = make_tiny_world(tmp_path / "w")
    cfg = TrainConfig.from_dict({"model": {"base": world["base"]},
                                 "data": {"files": [world["data"]], "images": world["images"]},
                                 "pipeline": {"family": "flux"}, "run": {"out": str(tmp_path / "o")},
                                 "objective": {"mcq": 1.0, "omit_states": 1.0}})
    with pytest.raises(ConfigError, match="omit_states trains the token states a pipeline reads, and a flux pipeline"):
        train(cfg, progress=False, echo=None)
    assert not (tmp_path / "o" / "image_cache").exists()
