"""`negenc convert`: OpenAI-`clip` and open_clip checkpoints become encoder folders with the same embeddings.

The reference is a forward written from each source's layout (`tests/_original_clip.py`, no
transformers): the converted folder's `CLIPModel.get_text_features` / `get_image_features` must give
its text and image embeddings, including the causal mask and the argmax-eos pooling.
"""

import argparse

import pytest
import torch

from negation_encoder.checkpoint import layout
from negation_encoder.checkpoint.convert import convert_checkpoint
from negation_encoder.cli import main
from negation_encoder.errors import IncompatibleModelError, InputError
from negation_encoder.testing import tiny

from ._original_clip import OpenAICLIP, OpenCLIP, randomize

TEXTS = ["a dog without a hat", "there is no cat on the table", "", "a red car"]


@pytest.fixture(scope="module")
def tok():
    return tiny.build_clip_tokenizer()


def _inputs(tok):
    ids = tok(TEXTS, padding="max_length", max_length=77, return_tensors="pt").input_ids
    # OpenAI's own tokenizer pads with 0 after the eot token: the same embeddings either way
    zero_padded = ids.clone()
    for row in zero_padded:
        eos = int((row == tok.eos_token_id).nonzero()[0])
        row[eos + 1:] = 0
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return ids, zero_padded, images


def _assert_same_embeddings(folder, reference, tok):
    from transformers import CLIPModel

    hf = CLIPModel.from_pretrained(folder).eval()
    ids, zero_padded, images = _inputs(tok)
    with torch.no_grad():
        ref_images, ref_texts = reference(images, ids)
        _, ref_zero = reference(images, zero_padded)
        texts = hf.get_text_features(input_ids=ids).pooler_output
        texts_zero = hf.get_text_features(input_ids=zero_padded).pooler_output
        imgs = hf.get_image_features(pixel_values=images).pooler_output
    torch.testing.assert_close(ref_texts, ref_zero, atol=1e-5, rtol=0)  # the causal mask hides the padding
    torch.testing.assert_close(texts, ref_texts, atol=1e-5, rtol=0)
    torch.testing.assert_close(texts_zero, ref_texts, atol=1e-5, rtol=0)
    torch.testing.assert_close(imgs, ref_images, atol=1e-5, rtol=0)
    assert float(hf.logit_scale.detach()) == pytest.approx(float(reference.logit_scale.detach()))
    assert ref_texts.abs().mean() > 0.1 and ref_images.abs().mean() > 0.1  # not a degenerate comparison


def test_openai_state_dict_round_trip(tmp_path, tok):
    ref = randomize(OpenAICLIP(len(tok)), seed=0)
    src = tmp_path / "ViT-tiny.pt"
    torch.save({k: v.half() for k, v in ref.state_dict().items()}, src)  # OpenAI releases fp16 weights
    with torch.no_grad():  # the reference with the same rounding
        for p in ref.parameters():
            p.copy_(p.half().float())
    res = convert_checkpoint(src, tmp_path / "out", source="openai")
    assert (res.architecture.text_width, res.architecture.text_heads, res.architecture.vision_heads,
            res.architecture.patch_size, res.architecture.image_size, res.architecture.embed_dim) == (128, 2, 3, 8, 32, 48)
    _assert_same_embeddings(tmp_path / "out", ref, tok)


def test_openai_torchscript_archive_round_trip(tmp_path, tok):
    ref = randomize(OpenAICLIP(len(tok)), seed=1)
    ids, _, images = _inputs(tok)
    src = tmp_path / "ViT-tiny-jit.pt"
    with torch.no_grad():
        torch.jit.trace(ref, (images, ids), check_trace=False).save(str(src))
    res = convert_checkpoint(src, tmp_path / "out", source="openai")
    assert res.read_as == "torchscript"
    _assert_same_embeddings(tmp_path / "out", ref, tok)


@pytest.mark.parametrize("fmt,quick_gelu", [("training", False), ("bare", True), ("safetensors", False)])
def test_open_clip_round_trip(tmp_path, tok, fmt, quick_gelu):
    from safetensors.torch import save_file

    ref = randomize(OpenCLIP(len(tok), quick_gelu=quick_gelu), seed=2)
    sd = ref.state_dict()
    src = tmp_path / ("open_clip_model.safetensors" if fmt == "safetensors" else "epoch_5.pt")
    if fmt == "training":  # open_clip's training checkpoint: DDP's module. prefix inside {"state_dict": ...}
        torch.save({"epoch": 5, "name": "negbench", "state_dict": {f"module.{k}": v for k, v in sd.items()},
                    "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0]}]}}, src)
    elif fmt == "safetensors":  # what open_clip pushes to the Hub
        save_file({k: v.contiguous() for k, v in sd.items()}, str(src))
    else:
        torch.save(sd, src)
    convert_checkpoint(src, tmp_path / "out", source="open_clip", activation="quick_gelu" if quick_gelu else "gelu")
    _assert_same_embeddings(tmp_path / "out", ref, tok)


def test_wrong_activation_changes_embeddings(tmp_path, tok):
    """The activation is not in the weights; the flag matters (and the default is OpenAI's QuickGELU)."""
    from transformers import CLIPModel

    ref = randomize(OpenCLIP(len(tok), quick_gelu=False), seed=3)
    torch.save(ref.state_dict(), tmp_path / "m.pt")
    convert_checkpoint(tmp_path / "m.pt", tmp_path / "out", source="open_clip")
    hf = CLIPModel.from_pretrained(tmp_path / "out")
    ids, _, _ = _inputs(tok)
    with torch.no_grad():
        assert not torch.allclose(hf.get_text_features(input_ids=ids).pooler_output, ref.encode_text(ids), atol=1e-3)


def test_converted_folder_loads_where_every_command_reads_it(tmp_path, tok):
    from integrations import load_negation_text_encoder
    from negation_encoder.eval.encoder import load_model

    ref = randomize(OpenAICLIP(len(tok)), seed=4)
    tok.save_pretrained(tmp_path / "tokenizer")
    torch.save(ref.state_dict(), tmp_path / "m.pt")
    assert main(["convert", "--from", "openai", str(tmp_path / "m.pt"), "--out", str(tmp_path / "enc"),
                 "--tokenizer", str(tmp_path / "tokenizer")]) == 0
    folder = tmp_path / "enc"
    layout.check_encoder_folder(folder)
    loaded = load_model(str(folder))  # negenc eval --model
    assert loaded.image_processor.crop_size["height"] == 32
    ids, _, _ = _inputs(tok)
    with torch.no_grad():
        want = ref.encode_text(ids)
        te = load_negation_text_encoder(str(folder), "text_encoder_2")  # negenc t2i --encoder (SDXL's second slot)
        torch.testing.assert_close(te(input_ids=ids).text_embeds, want, atol=1e-5, rtol=0)
        te1 = load_negation_text_encoder(str(folder))  # negenc t2i --encoder
        full = loaded.model.text_model(input_ids=ids)
        torch.testing.assert_close(te1(input_ids=ids).last_hidden_state, full.last_hidden_state, atol=0, rtol=0)
    conv = (folder / layout.CONVERSION).read_text()
    assert '"source_format": "openai"' in conv and '"activation": "quick_gelu"' in conv
    assert (folder / layout.MODEL_CARD).is_file()


def _save(tmp_path, sd, name="m.pt"):
    torch.save(sd, tmp_path / name)
    return str(tmp_path / name)


def test_unmappable_layouts_name_the_keys(tmp_path, tok):
    sd = randomize(OpenAICLIP(len(tok)), seed=5).state_dict()
    extra = dict(sd, **{"transformer.resblocks.0.ls_1.gamma": torch.ones(128)})  # open_clip's LayerScale
    with pytest.raises(IncompatibleModelError, match=r"unmapped keys: transformer\.resblocks\.0\.ls_1\.gamma"):
        convert_checkpoint(_save(tmp_path, extra), tmp_path / "o1", source="open_clip")
    lacking = {k: v for k, v in sd.items() if k != "visual.ln_post.bias"}
    with pytest.raises(IncompatibleModelError, match=r"missing keys: visual\.ln_post\.bias"):
        convert_checkpoint(_save(tmp_path, lacking), tmp_path / "o2", source="openai")
    resnet = dict(sd, **{"visual.layer1.0.conv1.weight": torch.ones(1)})
    with pytest.raises(IncompatibleModelError, match="ResNet image tower"):
        convert_checkpoint(_save(tmp_path, resnet), tmp_path / "o3", source="openai")
    with pytest.raises(IncompatibleModelError, match="not a CLIP ViT state dict"):
        convert_checkpoint(_save(tmp_path, {"weight": torch.ones(2)}), tmp_path / "o4", source="openai")


def test_tokenizer_is_required_where_none_can_be_shipped(tmp_path, tok):
    big = randomize(OpenAICLIP(49408, text_width=64, text_heads=1, vision_width=64, vision_heads=1), seed=6)
    with pytest.raises(InputError, match=r"OpenAI's 49408-token CLIP vocabulary.*pass --tokenizer DIR"):
        convert_checkpoint(_save(tmp_path, big.state_dict()), tmp_path / "o", source="openai")
    odd = randomize(OpenAICLIP(1000, text_width=64, text_heads=1, vision_width=64, vision_heads=1), seed=6)
    with pytest.raises(InputError, match="1000-token vocabulary, not CLIP's standard 49408"):
        convert_checkpoint(_save(tmp_path, odd.state_dict()), tmp_path / "o", source="openai")
    assert not (tmp_path / "o").exists()


def test_heads_cannot_be_guessed_below_64_wide(tmp_path, tok):
    m = randomize(OpenAICLIP(len(tok), text_width=32, text_heads=4), seed=7)
    src = _save(tmp_path, m.state_dict())
    with pytest.raises(IncompatibleModelError, match="from width 32.*pass --text-heads"):
        convert_checkpoint(src, tmp_path / "o", source="openai")
    convert_checkpoint(src, tmp_path / "o", source="openai", text_heads=4)
    _assert_same_embeddings(tmp_path / "o", m, tok)


def test_cli_errors_are_one_line(tmp_path, tok, capsys):
    def run(*argv):
        code = main(["convert", *argv])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        return err

    assert "no such file" in run("--from", "openai", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o"))
    (tmp_path / "junk.pt").write_bytes(b"not a pickle at all")
    assert "not a readable checkpoint" in run("--from", "openai", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "o"))
    sd = randomize(OpenAICLIP(len(tok)), seed=8).state_dict()
    torch.save({"state_dict": sd, "args": argparse.Namespace(lr=1e-5)}, tmp_path / "args.pt")
    assert "--allow-unsafe-pickle" in run("--from", "openai", str(tmp_path / "args.pt"), "--out", str(tmp_path / "o"))
    assert main(["convert", "--from", "openai", str(tmp_path / "args.pt"), "--out", str(tmp_path / "o"),
                 "--allow-unsafe-pickle"]) == 0
    capsys.readouterr()
    assert "exists; pass --overwrite" in run("--from", "openai", str(tmp_path / "args.pt"), "--out", str(tmp_path / "o"))
    (tmp_path / "notok").mkdir()
    assert "cannot load a CLIPTokenizer" in run("--from", "openai", str(tmp_path / "args.pt"), "--out",
                                                str(tmp_path / "o2"), "--tokenizer", str(tmp_path / "notok"),
                                                "--allow-unsafe-pickle")
