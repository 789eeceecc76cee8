"""Write the encoder checkpoint folder (`layout`), atomically.

The three text towers are the same weights. `text_encoder/` is saved with the `text_model.` key prefix
that transformers 4.x expects for CLIPTextModel; transformers 5 loads it as well.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from .. import results as R
from ..errors import DataError
from ..runio import atomic_write_json, writing
from . import layout
from .card import write_model_card


def text_encoder_state_dict(clip_model) -> dict[str, torch.Tensor]:
    """CLIPTextModel weights with 4.x key names (`text_model.embeddings...`)."""
    return {f"text_model.{k}": v.detach().contiguous().clone() for k, v in clip_model.text_model.state_dict().items()}


def export_checkpoint(clip_model, tokenizer, image_processor, out: str | os.PathLike, training_config: dict | None = None,
                      eval_results: dict | None = None, trainable: list[str] | None = None,
                      card_fields: dict | None = None, split_scorer=None) -> Path:
    """Save the folder into `<out>.tmp` and rename it into place (replacing an older export: the
    trainer only exports into a run folder it was allowed to write). `eval_results` must follow the
    one schema (`negation_encoder.results.make_results`)."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with writing(tmp):  # a failed write (full disk, read-only) is the OS error it is, naming the folder
            _write_folder(clip_model, tokenizer, image_processor, tmp, training_config, eval_results, trainable,
                          card_fields, split_scorer)
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # never a half-written export beside the run
        raise
    return out


def _write_folder(clip_model, tokenizer, image_processor, tmp: Path, training_config, eval_results, trainable,
                  card_fields, split_scorer) -> None:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tmp.mkdir(parents=True)
    clip_model = clip_model.to("cpu")
    clip_model.save_pretrained(tmp)
    if image_processor is not None:
        image_processor.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp / layout.TOKENIZER)
    tokenizer.save_pretrained(tmp)  # so CLIPProcessor / CLIPTokenizer.from_pretrained(folder) work too

    text_config = CLIPTextConfig.from_dict(clip_model.config.text_config.to_dict())
    text_config.projection_dim = clip_model.config.projection_dim
    te = CLIPTextModel(text_config)
    te.load_state_dict(clip_model.text_model.state_dict())
    te.config.save_pretrained(tmp / layout.TEXT_ENCODER)
    save_file(text_encoder_state_dict(clip_model), str(tmp / layout.TEXT_ENCODER / layout.WEIGHTS),
              metadata={"format": "pt"})

    tep = CLIPTextModelWithProjection(text_config)
    tep.text_model.load_state_dict(clip_model.text_model.state_dict())
    tep.text_projection.load_state_dict(clip_model.text_projection.state_dict())
    tep.save_pretrained(tmp / layout.TEXT_ENCODER_WITH_PROJECTION)

    if training_config is not None:
        meta = dict(training_config)
        if trainable is not None:
            meta["trainable_parameters"] = trainable
        (tmp / layout.TRAINING_CONFIG).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if eval_results is not None:
        _check_schema(eval_results)
        atomic_write_json(tmp / layout.EVAL_RESULTS, eval_results)
    if split_scorer is not None:
        split_scorer.save(tmp)
    write_model_card(tmp, **(card_fields or {}))


def _check_schema(results: dict) -> None:
    if results.get("schema") != R.SCHEMA:
        raise DataError(f"eval results must follow {R.SCHEMA} (negation_encoder.results.make_results)")


def write_eval_results(folder: str | os.PathLike, results: dict, split_scorer=None, **card_fields) -> Path:
    """Record evaluation results (one schema) and optionally the fitted split reader in an exported
    folder (atomically), and regenerate its model card."""
    folder = Path(folder)
    _check_schema(results)
    atomic_write_json(folder / layout.EVAL_RESULTS, results)
    if split_scorer is not None:
        split_scorer.save(folder)
    return write_model_card(folder, **card_fields)
