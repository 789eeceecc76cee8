"""`negenc export`: ComfyUI text encoder files and SD 1.x / SDXL single-file checkpoints, checked offline.

The SD 1.x checkpoint is a tiny pipeline written in the original layout (`tests/_ldm_single_file.py`,
itself checked by loading it back); the merged file is loaded with diffusers' `from_single_file` and its
text encoder must give our folder's hidden states exactly. SDXL's bigG slot is checked against a forward
written from open_clip's layout (`tests/_original_clip.py`), reading the merged file's fused weights.
"""

import hashlib

import pytest
import torch
from safetensors.torch import load_file, save_file

from negation_encoder.checkpoint import single_file
from negation_encoder.checkpoint.export import export_checkpoint
from negation_encoder.cli import main
from negation_encoder.errors import IncompatibleModelError
from negation_encoder.testing import tiny

from ._ldm_single_file import clip_to_ldm, sd1_single_file
from ._original_clip import OpenCLIP

PROMPTS = ["a street with no cars", "a dog without a hat", ""]


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _encoder(tmp, name, seed, **config):
    tok = tiny.build_clip_tokenizer()
    clip = tiny.build_clip_model(seed=seed, tokenizer=tok, **config)
    return export_checkpoint(clip, tok, tiny.build_clip_image_processor(32), tmp / name)


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    """(pipeline, its diffusers folder, its original-layout single file)."""
    from diffusers import StableDiffusionPipeline

    tmp = tmp_path_factory.mktemp("sd1")
    pipe = StableDiffusionPipeline(**tiny.build_sd_components(seed=0), requires_safety_checker=False)
    pipe.save_pretrained(tmp / "sd")
    save_file(sd1_single_file(pipe), str(tmp / "sd1.safetensors"))
    return pipe, tmp / "sd", tmp / "sd1.safetensors"


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return _encoder(tmp_path_factory.mktemp("enc"), "encoder", seed=9)


def _from_single_file(path, config):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_single_file(str(path), config=str(config), local_files_only=True,
                                                    safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _hidden_states(text_encoder, tok):
    ids = tok(PROMPTS, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        return text_encoder(input_ids=ids, output_hidden_states=True).hidden_states


def test_the_original_layout_writer_round_trips_through_diffusers(sd1):
    pipe, config, path = sd1
    loaded = _from_single_file(path, config)
    for name in ("unet", "vae", "text_encoder"):
        mine, theirs = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert mine.keys() == theirs.keys(), name
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), name


def test_sd1_merge_loads_with_from_single_file_and_reads_like_our_folder(sd1, encoder, tmp_path):
    from transformers import CLIPTextModel

    pipe, config, into = sd1
    before = _sha(into)
    out = tmp_path / "sd1-negation.safetensors"
    assert main(["export", str(encoder), "--format", "sd-checkpoint", "--into", str(into), "--out", str(out)]) == 0
    assert _sha(into) == before, "--into must never be written"
    merged = _from_single_file(out, config)
    ours = CLIPTextModel.from_pretrained(str(encoder), subfolder="text_encoder").eval()
    got, want = _hidden_states(merged.text_encoder, pipe.tokenizer), _hidden_states(ours, pipe.tokenizer)
    assert len(got) == len(want) == 3
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)
    assert not torch.equal(got[-1], _hidden_states(pipe.text_encoder, pipe.tokenizer)[-1])  # it did change
    for name in ("unet", "vae"):
        a, b = getattr(pipe, name).state_dict(), getattr(merged, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} changed"
    image = merged(PROMPTS[0], num_inference_steps=2, height=32, width=32, output_type="np",
                   generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 32, 32, 3)


def test_sd_checkpoint_refusals_are_one_line(sd1, encoder, tmp_path, capsys):
    _, _, into = sd1

    def refused(*argv):
        code = main(["export", *argv])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        return err

    sd_args = ("--format", "sd-checkpoint", "--into", str(into))
    wide = _encoder(tmp_path, "wide", seed=1, text_hidden_size=48)
    err = refused(str(wide), *sd_args, "--out", str(tmp_path / "a.safetensors"))
    assert "is 48 wide" in err and "is 32 wide" in err
    deep = _encoder(tmp_path, "deep", seed=1, text_layers=3)
    assert "has 3 layers but the checkpoint's SD 1.x text encoder" in refused(str(deep), *sd_args, "--out",
                                                                               str(tmp_path / "b.safetensors"))
    assert "is --into" in refused(str(encoder), *sd_args, "--out", str(into), "--overwrite")
    (tmp_path / "taken.safetensors").write_bytes(b"")
    assert "exists; pass --overwrite" in refused(str(encoder), *sd_args, "--out", str(tmp_path / "taken.safetensors"))
    assert "needs --into" in refused(str(encoder), "--format", "sd-checkpoint", "--out", str(tmp_path / "c.safetensors"))
    sd2 = tmp_path / "sd2.safetensors"
    save_file({"model.diffusion_model.out.2.bias": torch.zeros(4),
               "cond_stage_model.model.token_embedding.weight": torch.zeros(8, 4)}, str(sd2))
    assert "an SD 2.x checkpoint" in refused(str(encoder), "--format", "sd-checkpoint", "--into", str(sd2), "--out",
                                             str(tmp_path / "d.safetensors"))
    lone = tmp_path / "lone.safetensors"
    save_file({"text_model.embeddings.token_embedding.weight": torch.zeros(8, 4)}, str(lone))
    assert "not an original-layout Stable Diffusion checkpoint" in refused(
        str(encoder), "--format", "sd-checkpoint", "--into", str(lone), "--out", str(tmp_path / "e.safetensors"))
    assert not list(tmp_path.glob("*.tmp"))


def _bigg_sized_encoder(tmp, seed, width=32):
    """A tiny encoder folder shaped like open_clip's text tower (MLP 4x wide, as bigG's layout implies)."""
    from transformers import CLIPModel

    tok = tiny.build_clip_tokenizer()
    cfg = tiny.clip_config(tok, text_hidden_size=width, projection_dim=32)
    cfg.text_config.intermediate_size = 4 * width
    torch.manual_seed(seed)
    return export_checkpoint(CLIPModel(cfg).eval(), tok, tiny.build_clip_image_processor(32), tmp / f"bigg{width}")


def _read_open_clip_slot(path, tok, width):
    """The text embeddings of the file's bigG slot, through a forward written from open_clip's layout."""
    prefix = "conditioner.embedders.1.model."
    reader = OpenCLIP(len(tok), quick_gelu=True, text_width=width, text_heads=4, embed_dim=32).eval()
    merged = load_file(str(path))
    result = reader.load_state_dict({k[len(prefix):]: v.float() for k, v in merged.items() if k.startswith(prefix)},
                                    strict=False)
    assert result.unexpected_keys == [] and all(k.startswith("visual.") for k in result.missing_keys)
    ids = tok(PROMPTS, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        return reader.encode_text(ids), ids


def test_sdxl_merge_fills_both_slots_in_their_layouts(tmp_path, encoder):
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tok = tiny.build_clip_tokenizer()
    encoder_2 = _bigg_sized_encoder(tmp_path, seed=4)
    original_l = tiny.build_clip_text_model(seed=1, tokenizer=tok)
    original_g = OpenCLIP(len(tok), quick_gelu=True, text_width=32, text_heads=4, embed_dim=32)
    g_keys = {k: v for k, v in original_g.state_dict().items() if not k.startswith("visual.")}
    ckpt = {"model.diffusion_model.input_blocks.0.0.weight": torch.randn(4, 4, 3, 3),
            **{k: v.half() for k, v in clip_to_ldm(original_l, "conditioner.embedders.0.transformer.").items()},
            **{f"conditioner.embedders.1.model.{k}": v for k, v in g_keys.items()}}
    into = tmp_path / "sdxl.safetensors"
    save_file({k: v.contiguous() for k, v in ckpt.items()}, str(into))
    out = tmp_path / "sdxl-negation.safetensors"
    assert main(["export", str(encoder), "--format", "sd-checkpoint", "--into", str(into), "--encoder-2",
                 str(encoder_2), "--out", str(out)]) == 0
    merged = load_file(str(out))
    assert merged.keys() == ckpt.keys()
    assert torch.equal(merged["model.diffusion_model.input_blocks.0.0.weight"],
                       ckpt["model.diffusion_model.input_blocks.0.0.weight"])
    assert torch.equal(merged["conditioner.embedders.1.model.logit_scale"], ckpt["conditioner.embedders.1.model.logit_scale"])
    # first slot: transformers names, the checkpoint's fp16, our CLIP-L-slot weights
    ours_l = CLIPTextModel.from_pretrained(str(encoder), subfolder="text_encoder")
    for k, v in ours_l.state_dict().items():
        got = merged[f"conditioner.embedders.0.transformer.text_model.{k}"]
        assert got.dtype == torch.float16 and torch.equal(got, v.half()), k
    # second slot: open_clip names; its own forward gives our projected text embeddings
    got, ids = _read_open_clip_slot(out, tok, 32)
    ours_g = CLIPTextModelWithProjection.from_pretrained(str(encoder_2), subfolder="text_encoder_with_projection")
    with torch.no_grad():
        torch.testing.assert_close(got, ours_g(input_ids=ids).text_embeds, atol=1e-5, rtol=0)


def test_sdxl_places_a_lone_encoder_by_width(tmp_path):
    from transformers import CLIPTextModelWithProjection

    tok = tiny.build_clip_tokenizer()
    ckpt = {"model.diffusion_model.x": torch.zeros(1),
            **clip_to_ldm(tiny.build_clip_text_model(seed=1, tokenizer=tok), "conditioner.embedders.0.transformer."),
            **{f"conditioner.embedders.1.model.{k}": v for k, v in
               OpenCLIP(len(tok), text_width=48, text_heads=4, embed_dim=32).state_dict().items()
               if not k.startswith("visual.")}}
    into = tmp_path / "sdxl.safetensors"
    save_file({k: v.contiguous() for k, v in ckpt.items()}, str(into))
    narrow = _encoder(tmp_path, "narrow", seed=2, text_hidden_size=16, num_attention_heads=2)
    with pytest.raises(IncompatibleModelError, match=r"is 16 wide; SDXL first text encoder .* is 32 wide, SDXL second"
                                                     r".* is 48 wide"):
        single_file.merge_into_checkpoint(narrow, into, tmp_path / "o.safetensors")
    wide = _bigg_sized_encoder(tmp_path, seed=5, width=48)  # the bigG-sized one goes to the second slot
    res = single_file.merge_into_checkpoint(wide, into, tmp_path / "o.safetensors")
    assert res.slots == [single_file.SDXL_SLOTS[1].label]
    merged = load_file(str(tmp_path / "o.safetensors"))
    first = "conditioner.embedders.0.transformer."
    assert all(torch.equal(merged[k], v) for k, v in ckpt.items() if k.startswith(first))
    got, ids = _read_open_clip_slot(tmp_path / "o.safetensors", tok, 48)
    ours = CLIPTextModelWithProjection.from_pretrained(str(wide), subfolder="text_encoder_with_projection")
    with torch.no_grad():
        torch.testing.assert_close(got, ours(input_ids=ids).text_embeds, atol=1e-5, rtol=0)
    same_width = _bigg_sized_encoder(tmp_path, seed=6)  # fits the first slot's width, not its MLP: named
    with pytest.raises(IncompatibleModelError, match=r"mlp\.fc1\.\w+ is \(128"):
        single_file.merge_into_checkpoint(same_width, into, tmp_path / "o2.safetensors")


def test_sd1_files_without_the_text_model_level_are_merged_into_it(sd1, encoder, tmp_path):
    """CompVis' first files name the encoder cond_stage_model.transformer.embeddings.* (no text_model.)."""
    pipe, config, into = sd1
    old = {k.replace("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer."): v
           for k, v in load_file(str(into)).items()}
    save_file(old, str(tmp_path / "old.safetensors"))
    single_file.merge_into_checkpoint(encoder, tmp_path / "old.safetensors", tmp_path / "new.safetensors")
    keys = [k for k in load_file(str(tmp_path / "new.safetensors")) if k.startswith("cond_stage_model.")]
    assert keys and all(k.startswith("cond_stage_model.transformer.text_model.") for k in keys)
    merged = _from_single_file(tmp_path / "new.safetensors", config)
    from transformers import CLIPTextModel

    ours = CLIPTextModel.from_pretrained(str(encoder), subfolder="text_encoder").eval()
    assert torch.equal(_hidden_states(merged.text_encoder, pipe.tokenizer)[-1], _hidden_states(ours, pipe.tokenizer)[-1])


def test_comfyui_refuses_sizes_comfyui_cannot_build(encoder, tmp_path, capsys):
    assert main(["export", str(encoder), "--format", "comfyui", "--out", str(tmp_path / "clip.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ComfyUI builds its CLIP text encoders from fixed configs" in err
    assert "this encoder is 32 wide, 2 layers" in err
    assert not (tmp_path / "clip.safetensors").exists()


def test_comfyui_slots_from_the_configs():
    from transformers import CLIPTextConfig

    clip_l = CLIPTextConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                            projection_dim=768, hidden_act="quick_gelu", vocab_size=49408, max_position_embeddings=77)
    big_g = CLIPTextConfig(hidden_size=1280, num_hidden_layers=32, num_attention_heads=20, intermediate_size=5120,
                           projection_dim=1280, hidden_act="gelu", vocab_size=49408, max_position_embeddings=77)
    assert single_file.comfyui_slot(clip_l).name == "CLIP-L"
    assert single_file.comfyui_slot(big_g).name == "CLIP-G"
    clip_l.hidden_act = "gelu"  # ComfyUI's CLIP-L runs QuickGELU: a GELU-trained 768 encoder would read wrong
    with pytest.raises(IncompatibleModelError):
        single_file.comfyui_slot(clip_l)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_comfyui_file_has_comfyuis_key_names_and_our_weights(encoder, tmp_path, monkeypatch, dtype):
    """ComfyUI's CLIP text model uses transformers' key names; the file loads strictly into
    CLIPTextModelWithProjection and reads like the folder. (The tiny size stands in for CLIP-L.)"""
    from transformers import CLIPTextModelWithProjection

    tok = tiny.build_clip_tokenizer()
    stand_in = single_file.ComfySlot("CLIP-L", 32, 2, 4, 69, 24, "quick_gelu", "CLIPLoader", vocab_size=len(tok))
    monkeypatch.setattr(single_file, "COMFYUI_SLOTS", (stand_in,))
    out = tmp_path / "clip_l.safetensors"
    assert main(["export", str(encoder), "--format", "comfyui", "--out", str(out), "--dtype", dtype]) == 0
    sd = load_file(str(out))
    # what ComfyUI's detect_te_model and its CLIPTextModel read
    assert "text_model.encoder.layers.0.mlp.fc1.weight" in sd and "text_projection.weight" in sd
    assert all(k.startswith("text_model.") or k == "text_projection.weight" for k in sd)
    assert all(v.dtype == (torch.float16 if dtype == "fp16" else torch.float32) for v in sd.values())
    ours = CLIPTextModelWithProjection.from_pretrained(str(encoder), subfolder="text_encoder_with_projection").eval()
    reread = CLIPTextModelWithProjection(ours.config).eval()
    reread.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    ids = tok(PROMPTS, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        got, want = reread(input_ids=ids), ours(input_ids=ids)
    tol = 0 if dtype == "fp32" else 1e-2
    torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, atol=tol, rtol=0)
    torch.testing.assert_close(got.text_embeds, want.text_embeds, atol=tol, rtol=0)
