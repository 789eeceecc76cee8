"""Every loader of a text encoder checks that its source is a CLIP text tower before anything loads: a BERT or
T5 folder (real ones, saved and reloaded) is one IncompatibleModelError naming the folder and what it is, and
each kind of CLIP folder loads the same weights."""

import shutil

import pytest
import torch

from integrations import (
    load_clipseg_text_encoder,
    load_negation_text_encoder,
    negation_pipeline,
    swap_clipseg_text_encoder,
)
from negation_encoder.checkpoint import layout
from negation_encoder.checkpoint.export import export_checkpoint
from negation_encoder.checkpoint.publish import publish
from negation_encoder.checkpoint.sources import check_clip_model, check_encoder_checkpoint, text_tower
from negation_encoder.errors import IncompatibleModelError, InputError
from negation_encoder.testing import tiny

from ._cli_helpers import one_line

NOT_CLIP = {"bert": "a BertModel folder (model_type 'bert')", "t5": "a T5EncoderModel folder (model_type 't5')"}



@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from diffusers import StableDiffusionPipeline
    from transformers import AutoConfig

    root = tmp_path_factory.mktemp("sources")
    out = {}
    for kind in NOT_CLIP:
        tiny.build_non_clip_text_model(kind).save_pretrained(root / kind)
        assert AutoConfig.from_pretrained(root / kind).model_type == kind  # a real folder of that kind
        out[kind] = root / kind
    tok = tiny.build_clip_tokenizer()
    clip = tiny.build_clip_model(seed=3, tokenizer=tok, projection_dim=24)
    clip.save_pretrained(root / "clip")
    out["clip"] = root / "clip"
    tiny.build_clip_text_model(seed=4, tokenizer=tok).save_pretrained(root / "text")
    out["text"] = root / "text"
    tiny.build_clip_text_model_with_projection(seed=4, tokenizer=tok, projection_dim=24).save_pretrained(root / "proj")
    out["proj"] = root / "proj"
    export_checkpoint(clip, tok, tiny.build_clip_image_processor(32), root / "ckpt", training_config={"base": "t"})
    out["ckpt"] = root / "ckpt"
    # the checkpoint's file names with a BERT inside: names alone do not make a checkpoint
    fake = root / "fake_ckpt"
    shutil.copytree(root / "bert", fake)
    shutil.copytree(root / "bert", fake / layout.TEXT_ENCODER)
    out["fake_ckpt"] = fake
    StableDiffusionPipeline(**tiny.build_sd_components(seed=0), requires_safety_checker=False).save_pretrained(root / "sd")
    out["sd"] = root / "sd"
    shutil.copytree(root / "sd", root / "sd_no_te")
    shutil.rmtree(root / "sd_no_te" / "text_encoder")
    out["sd_no_te"] = root / "sd_no_te"
    return out


@pytest.mark.parametrize("name,role,where", [
    ("clip", "text_encoder", (None, "text")), ("clip", "text_encoder_2", (None, "projection")),
    ("clip", "clipseg", (None, "clip")), ("text", "text_encoder", (None, "text")),
    ("proj", "text_encoder_2", (None, "projection")), ("proj", "clipseg", (None, "projection")),
    ("ckpt", "text_encoder", ("text_encoder", "text")),
    ("ckpt", "text_encoder_2", ("text_encoder_with_projection", "projection")), ("ckpt", "clipseg", (None, "clip")),
    ("sd", "text_encoder", ("text_encoder", "text")),
])
def test_clip_text_towers_are_found_where_they_are(folders, name, role, where):
    loc = text_tower(str(folders[name]), role)
    assert (loc.subfolder, loc.kind) == where


@pytest.mark.parametrize("kind", sorted(NOT_CLIP))
def test_every_loader_refuses_a_folder_that_is_not_clip(folders, kind):
    path = str(folders[kind])
    line = f"{path}: {NOT_CLIP[kind]}, not a CLIP text tower; expected a CLIPModel folder"
    for role in ("text_encoder", "text_encoder_2"):
        with pytest.raises(IncompatibleModelError) as e:
            load_negation_text_encoder(path, role)
        assert str(e.value).startswith(line), e.value
    with pytest.raises(IncompatibleModelError) as e:
        load_clipseg_text_encoder(path, "--encoder")
    assert str(e.value).startswith(f"--encoder {line}"), e.value
    with pytest.raises(IncompatibleModelError) as e:
        swap_clipseg_text_encoder(tiny.build_clipseg(seed=0, projection_dim=24), path)
    assert str(e.value).startswith(line), e.value
    with pytest.raises(IncompatibleModelError) as e:
        negation_pipeline(str(folders["sd"]), path)
    assert str(e.value).startswith(line), e.value
    with pytest.raises(IncompatibleModelError) as e:
        check_clip_model(path, "--model")
    assert str(e.value) == f"--model {path}: {NOT_CLIP[kind]}; expected a CLIPModel checkpoint (model_type 'clip')"


def test_a_text_tower_without_projection_is_named_where_a_projection_is_needed(folders):
    path = str(folders["text"])
    with pytest.raises(IncompatibleModelError) as e:
        load_clipseg_text_encoder(path, "--encoder")
    assert str(e.value).startswith(f"--encoder {path}: a CLIPTextModel folder; it has no text projection, which "
                                   "CLIPSeg needs"), e.value
    with pytest.raises(IncompatibleModelError) as e:
        check_clip_model(path, "--model")
    assert "a CLIPTextModel folder (a text tower alone has no vision tower)" in str(e.value)


def test_a_pipeline_folder_is_named_as_one(folders):
    path = str(folders["sd_no_te"])
    with pytest.raises(IncompatibleModelError) as e:
        load_negation_text_encoder(path)
    assert str(e.value).startswith(f"{path}: a diffusers pipeline folder (StableDiffusionPipeline) with no "
                                   "text_encoder/, not a CLIP text tower"), e.value


def test_every_clip_folder_loads_the_same_text_weights(folders):
    """A CLIPModel folder gives its own text tower (and projection): the weights the checkpoint's subfolders hold."""
    from transformers import CLIPModel

    ids = torch.tensor([[0, 5, 9, 1]])
    ref = CLIPModel.from_pretrained(folders["clip"]).eval()
    with torch.no_grad():
        want = ref.text_model(ids).last_hidden_state
        want_proj = ref.text_projection(ref.text_model(ids).pooler_output)
        for name in ("clip", "ckpt"):
            te = load_negation_text_encoder(str(folders[name]), "text_encoder").eval()
            assert torch.equal(te(ids).last_hidden_state, want), name
            tep = load_negation_text_encoder(str(folders[name]), "text_encoder_2").eval()
            assert torch.allclose(tep(ids).text_embeds, want_proj, atol=1e-6), name
    seg = tiny.build_clipseg(seed=0, projection_dim=24)
    swap_clipseg_text_encoder(seg, str(folders["clip"]))
    assert torch.equal(seg.clip.text_projection.weight, ref.text_projection.weight)


def test_checkpoint_names_with_other_models_inside_are_refused(folders):
    path = folders["fake_ckpt"]
    with pytest.raises(IncompatibleModelError) as e:
        check_encoder_checkpoint(path)
    assert str(e.value).startswith(f"{path}: a BertModel folder (model_type 'bert'), not a negation-encoder "
                                   "checkpoint folder"), e.value
    with pytest.raises(IncompatibleModelError) as e:
        layout.check_encoder_folder(path)  # what the testbed's comparisons call
    assert str(e.value).startswith(f"--encoder {path}: a BertModel folder"), e.value
    with pytest.raises(IncompatibleModelError):
        publish(path, "org/x", dry_run=True)


@pytest.mark.parametrize("kind", sorted(NOT_CLIP))
def test_cli_publish_and_eval_refuse_non_clip_folders(folders, tmp_path, capsys, kind):
    path = folders[kind]
    err = one_line(capsys, ["publish", str(path), "--repo-id", "org/x", "--dry-run"])
    assert err.startswith(f"negenc: error: {path}: {NOT_CLIP[kind]} (missing text_encoder/config.json), not a "
                          "negation-encoder checkpoint folder"), err
    (tmp_path / "data").mkdir()
    err = one_line(capsys, ["eval", "--model", str(path), "--data-root", str(tmp_path / "data"), "--out",
                             str(tmp_path / "o"), "--bench", "valse", "--no-progress"])
    assert err == f"negenc: error: --model {path}: {NOT_CLIP[kind]}; expected a CLIPModel checkpoint (model_type " \
                  "'clip') (a negation-encoder checkpoint folder is one)"
    assert not (tmp_path / "o").exists()


def test_a_config_that_is_not_json_is_one_line(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(InputError) as e:
        text_tower(str(bad), flag="--encoder")
    assert str(e.value).startswith(f"--encoder {bad}: config.json is not readable JSON (JSONDecodeError"), e.value
