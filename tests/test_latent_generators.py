"""The world's SD-style and SDXL-style generators: they load with the plain diffusers pipeline classes, and
what their UNets are trained on is, bit for bit, what `conditioning.read_text` says those pipelines read."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from negation_encoder.cli import main
from negation_encoder.conditioning import read_text, reading
from negation_testbed.instruments.base_clip import BASE_DIR, world_tokenizer
from negation_testbed.instruments.generator import base_text_encoder
from negation_testbed.instruments.latent_generator import (
    LatentGeneratorConfig,
    VAEConfig,
    base_text_encoder_with_projection,
    build_latent_unet,
    build_vae,
    latent_pipeline,
    latent_sampling_scheduler,
    pipeline_conditioning,
    pretrain_latent_t2i,
)

CAPTIONS = ["a red cup", "a kitchen with a blue plate and no fork", ""]
TINY = dict(steps=2, batch_size=4, channels=(8, 16, 16), sampling_prompts=0, vae_steps=2)


def _pipe(kind: str):
    cfg = LatentGeneratorConfig(kind=kind, **TINY)
    te = base_text_encoder()
    te2 = base_text_encoder_with_projection() if kind == "sdxl" else None
    cross = te.config.hidden_size * (2 if kind == "sdxl" else 1)
    unet = build_latent_unet(cfg, cross, te2.config.projection_dim if te2 is not None else None)
    return latent_pipeline(kind, unet, build_vae(VAEConfig(channels=(8, 16))), latent_sampling_scheduler(cfg),
                           world_tokenizer(), te, te2)


def _tokens(texts):
    return world_tokenizer()(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")


def _ids(texts):
    return _tokens(texts).input_ids


def test_sd_style_unet_reads_the_unmasked_last_hidden_state_as_conditioning_says():
    pipe = _pipe("sd")
    got = pipeline_conditioning(pipe, "sd", CAPTIONS)["encoder_hidden_states"]
    with torch.no_grad():
        want = read_text(pipe.text_encoder, None, _ids(CAPTIONS), None, reading("sd1"))[0]
        enc = _tokens(CAPTIONS)
        masked = read_text(pipe.text_encoder, None, enc.input_ids, enc.attention_mask, reading("if"))[0]
    assert got.shape == (3, 77, 64) and torch.equal(got, want)
    assert not torch.allclose(got, masked, atol=1e-3), "the masked (IF) reading equals the unmasked one: no check"


def test_sdxl_style_unet_reads_two_towers_penultimate_states_and_the_projected_pooled_output():
    pipe = _pipe("sdxl")
    got = pipeline_conditioning(pipe, "sdxl", CAPTIONS)
    ids = _ids(CAPTIONS)
    with torch.no_grad():
        s1 = read_text(pipe.text_encoder, None, ids, None, reading("sdxl", "text_encoder"))[0]
        s2, pooled, _ = read_text(pipe.text_encoder_2.text_model, pipe.text_encoder_2.text_projection, ids, None,
                                  reading("sdxl", "text_encoder_2"))
        last = read_text(pipe.text_encoder, None, ids, None, reading("sd1"))[0]
    assert torch.equal(got["encoder_hidden_states"], torch.cat([s1, s2], -1))
    assert torch.equal(got["added_cond_kwargs"]["text_embeds"], pooled)
    assert got["added_cond_kwargs"]["time_ids"].tolist() == [[32, 32, 0, 0, 32, 32]] * 3
    assert not torch.allclose(s1, last, atol=1e-3), "the penultimate layer equals the last one: no check"


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_latent_generator_trains_saves_and_loads_with_the_plain_pipeline_class(kind, tmp_path):
    from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    info = pretrain_latent_t2i(LatentGeneratorConfig(kind=kind, **TINY), out=tmp_path / kind, progress=False)
    assert info["config"]["kind"] == kind and info["vae"]["recon_mse_512"] > 0
    assert json.loads((tmp_path / kind / "pretrain_info.json").read_text())["command"].endswith(f"--kind {kind}")
    cls = StableDiffusionPipeline if kind == "sd" else StableDiffusionXLPipeline
    pipe = cls.from_pretrained(tmp_path / kind)
    assert type(DiffusionPipeline.from_pretrained(tmp_path / kind)) is cls
    pipe.set_progress_bar_config(disable=True)
    images = pipe(["a red cup"], num_inference_steps=2, guidance_scale=3.0, output_type="np",
                  generator=[torch.Generator().manual_seed(0)]).images
    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()
    if kind == "sdxl":
        assert pipe.config.force_zeros_for_empty_prompt is False  # guidance uses the "" branch it was trained on
    # the VAE is reused as given, bit for bit
    again = pretrain_latent_t2i(LatentGeneratorConfig(kind=kind, **{**TINY, "vae": str(tmp_path / kind / "vae")}),
                                out=tmp_path / "again", progress=False)
    assert again["vae"]["reused"] == str(tmp_path / kind / "vae")  # with the VAE's own run, saved beside it
    assert again["vae"]["recon_mse_512"] == info["vae"]["recon_mse_512"]
    a, b = cls.from_pretrained(tmp_path / kind).vae, cls.from_pretrained(tmp_path / "again").vae
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_pretrain_t2i_vae_flag_needs_a_latent_kind(tmp_path, capsys):
    assert main(["testbed", "pretrain-t2i", "--vae", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--vae" in err and not (tmp_path / "x").exists()


def test_committed_latent_generators_load_and_read_the_base_encoder():
    """The committed SD-style and SDXL-style generators: plain pipeline classes, the base tower(s) frozen in
    them, validated sampling settings saved."""
    from diffusers import DiffusionPipeline
    from transformers import CLIPModel

    from negation_testbed.drop_in.t2i_compare import GENERATORS, pipeline_sampling

    clip = CLIPModel.from_pretrained(BASE_DIR)
    for kind, cls in (("sd", "StableDiffusionPipeline"), ("sdxl", "StableDiffusionXLPipeline")):
        pipe = DiffusionPipeline.from_pretrained(GENERATORS[kind])
        assert type(pipe).__name__ == cls
        for name, p in pipe.text_encoder.state_dict().items():
            assert torch.equal(p, clip.text_model.state_dict()[name]), f"{kind}: text_encoder {name} is not the base's"
        info = json.loads((GENERATORS[kind] / "pretrain_info.json").read_text())
        assert info["config"]["kind"] == kind and "chosen_by" in info["sampling"]
        assert pipeline_sampling(GENERATORS[kind]) == (info["sampling"]["steps"], info["sampling"]["guidance_scale"])


def test_snapshots_save_the_ema_pipeline_midway_without_changing_the_run(tmp_path):
    """`pretrain-t2i --kind sd --snapshots 1`: the EMA pipeline after one step is saved to step_1 and loads with
    the plain class; the final weights equal those of the same run without snapshots (saving does not disturb
    training); a snapshot outside the run is refused in one line before any training."""
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    common = ["testbed", "pretrain-t2i", "--kind", "sd", "--steps", "2", "--sampling-prompts", "0"]
    vae = ["--vae", str(tmp_path / "plain" / "vae")]
    pretrain_latent_t2i(LatentGeneratorConfig(kind="sd", **TINY), out=tmp_path / "plain", progress=False)
    cfg = {**TINY, "vae": str(tmp_path / "plain" / "vae")}
    pretrain_latent_t2i(LatentGeneratorConfig(kind="sd", **cfg), out=tmp_path / "a", progress=False)
    pretrain_latent_t2i(LatentGeneratorConfig(kind="sd", **cfg), out=tmp_path / "b", progress=False, snapshots=(1,))
    unet = "unet/diffusion_pytorch_model.safetensors"
    final_a, final_b = load_file(str(tmp_path / "a" / unet)), load_file(str(tmp_path / "b" / unet))
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    snap = load_file(str(tmp_path / "b" / "step_1" / unet))
    assert any(not torch.equal(snap[k], final_b[k]) for k in snap), "the snapshot is the final pipeline"
    assert isinstance(StableDiffusionPipeline.from_pretrained(tmp_path / "b" / "step_1"), StableDiffusionPipeline)
    assert not (tmp_path / "a" / "step_1").exists()
    for bad in ("2", "0", "x"):
        assert main([*common, *vae, "--snapshots", bad, "--out", str(tmp_path / f"bad{bad}")]) == 2
        assert not (tmp_path / f"bad{bad}").exists()
