"""The null encoder (`negenc testbed null-encoder`): seeded noise on the text tower's weight matrices only, at
the asked scale of each matrix's std, written as an encoder folder the drop-in commands load."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPModel, CLIPTextModel

from negation_encoder.checkpoint.layout import check_encoder_folder
from negation_encoder.cli import main
from negation_encoder.testing import tiny


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("null") / "base"
    tok = tiny.build_clip_tokenizer()
    tiny.build_clip_model(seed=0, tokenizer=tok).save_pretrained(root)
    tok.save_pretrained(root)
    tiny.build_clip_image_processor(32).save_pretrained(root)
    return root


def _run(base, out, *extra) -> int:
    return main(["testbed", "null-encoder", "--base", str(base), "--out", str(out), *extra])


def test_noise_lands_on_the_text_matrices_at_the_asked_scale_and_nowhere_else(base, tmp_path):
    assert _run(base, tmp_path / "n", "--scale", "0.5", "--seed", "3") == 0
    check_encoder_folder(tmp_path / "n")
    card = (tmp_path / "n" / "README.md").read_text()
    assert "null encoder (not fine-tuned)" in card and "fine-tuned, vision frozen" not in card
    before = CLIPModel.from_pretrained(base).state_dict()
    after = CLIPModel.from_pretrained(tmp_path / "n").state_dict()
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved and all(k.startswith("text_model.encoder.") and k.endswith(".weight") and before[k].ndim == 2
                         for k in moved)
    untouched = [k for k in before if k.startswith("text_model.encoder.") and k.endswith(".weight")
                 and before[k].ndim == 2 and k not in moved]
    assert not untouched  # every matrix of the tower's layers (embeddings, norms, biases, vision: none)
    noise = torch.cat([((after[k] - before[k]) / before[k].std()).flatten() for k in moved])
    assert noise.std().item() == pytest.approx(0.5, rel=0.05) and abs(noise.mean().item()) < 0.02
    # the folder's text_encoder (what pipelines load) holds the same perturbed tower
    te = CLIPTextModel.from_pretrained(tmp_path / "n" / "text_encoder")
    assert all(torch.equal(te.get_parameter(k.removeprefix("text_model.")), after[k]) for k in moved)


def test_the_seed_fixes_the_noise_and_scale_zero_is_the_base(base, tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert _run(base, tmp_path / name, "--seed", str(seed)) == 0
    a, b, c = (CLIPModel.from_pretrained(tmp_path / n).state_dict() for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert _run(base, tmp_path / "z", "--scale", "0") == 0
    z, ref = CLIPModel.from_pretrained(tmp_path / "z").state_dict(), CLIPModel.from_pretrained(base).state_dict()
    assert all(torch.equal(z[k], ref[k]) for k in z)


def test_bad_scale_and_an_existing_folder_are_refused_before_anything_is_written(base, tmp_path, capsys):
    assert _run(base, tmp_path / "x", "--scale", "-1") == 2
    assert "--scale must be a number >= 0, got -1.0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "mine.txt").write_text("keep me")
    assert _run(base, tmp_path / "kept") == 2
    assert "exists and is not empty (pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "kept" / "mine.txt").read_text() == "keep me"
    assert _run(base, tmp_path / "kept", "--overwrite") == 0
    check_encoder_folder(tmp_path / "kept")
