"""Write the encoder checkpoint folder of DESIGN.md, atomically.

    config.json, model.safetensors       full CLIPModel (benchmarks, CLIPSeg, retrieval)
    text_encoder/                        CLIPTextModel (SD 1.x / SDXL `text_encoder`)
    text_encoder_with_projection/        CLIPTextModelWithProjection (SDXL `text_encoder_2`, CLIPSeg)
    tokenizer/                           CLIPTokenizer files
    training_config.json, eval_results.json, README.md (model card)

The three text towers are the same weights. `text_encoder/` is saved with the `text_model.` key
prefix that transformers 4.x expects for CLIPTextModel; transformers 5 loads it as well.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file


def text_encoder_state_dict(clip_model) -> dict[str, torch.Tensor]:
    """CLIPTextModel weights with 4.x key names (`text_model.embeddings...`)."""
    return {f"text_model.{k}": v.detach().contiguous().clone() for k, v in clip_model.text_model.state_dict().items()}


def export_checkpoint(clip_model, tokenizer, image_processor, out: str | os.PathLike, training_config: dict | None = None,
                      eval_results: dict | None = None, trainable: list[str] | None = None,
                      card_fields: dict | None = None) -> Path:
    """Save the folder into `<out>.tmp` and rename it into place (replacing an older export: the
    trainer only exports into a run folder it was allowed to write)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    clip_model = clip_model.to("cpu")
    clip_model.save_pretrained(tmp)
    if image_processor is not None:
        image_processor.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp / "tokenizer")
    tokenizer.save_pretrained(tmp)  # so CLIPProcessor / CLIPTokenizer.from_pretrained(folder) work too

    text_config = CLIPTextConfig.from_dict(clip_model.config.text_config.to_dict())
    text_config.projection_dim = clip_model.config.projection_dim
    te = CLIPTextModel(text_config)
    te.load_state_dict(clip_model.text_model.state_dict())
    te.config.save_pretrained(tmp / "text_encoder")
    save_file(text_encoder_state_dict(clip_model), str(tmp / "text_encoder" / "model.safetensors"),
              metadata={"format": "pt"})

    tep = CLIPTextModelWithProjection(text_config)
    tep.text_model.load_state_dict(clip_model.text_model.state_dict())
    tep.text_projection.load_state_dict(clip_model.text_projection.state_dict())
    tep.save_pretrained(tmp / "text_encoder_with_projection")

    if training_config is not None:
        meta = dict(training_config)
        if trainable is not None:
            meta["trainable_parameters"] = trainable
        (tmp / "training_config.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if eval_results is not None:
        (tmp / "eval_results.json").write_text(json.dumps(eval_results, indent=2, sort_keys=True) + "\n")
    from ..hub import write_model_card

    write_model_card(tmp, **(card_fields or {}))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def write_eval_results(folder: str | os.PathLike, results: dict, **card_fields) -> Path:
    """Record evaluation results in an exported folder (atomically) and regenerate its model card."""
    from ..hub import write_model_card

    folder = Path(folder)
    tmp = folder / "eval_results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / "eval_results.json")
    return write_model_card(folder, **card_fields)
