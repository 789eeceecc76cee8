"""Model cards for encoder checkpoint folders (huggingface_hub's ModelCard, typed metadata)."""

from __future__ import annotations

import json
from pathlib import Path

USAGE_TEMPLATE = '''```python
import torch
from diffusers import StableDiffusionPipeline
from transformers import CLIPTextModel

text_encoder = CLIPTextModel.from_pretrained("{repo}", subfolder="text_encoder")
pipe = StableDiffusionPipeline.from_pretrained("{sd_base}", text_encoder=text_encoder)
image = pipe("a street with no cars", generator=torch.Generator().manual_seed(0)).images[0]
```

SDXL (both CLIP encoders replaced, as in the NegationCLIP paper):

```python
from diffusers import StableDiffusionXLPipeline
from transformers import CLIPTextModel, CLIPTextModelWithProjection

pipe = StableDiffusionXLPipeline.from_pretrained(
    "{sdxl_base}",
    text_encoder=CLIPTextModel.from_pretrained("{repo}", subfolder="text_encoder"),
    text_encoder_2=CLIPTextModelWithProjection.from_pretrained("{repo_2}", subfolder="text_encoder_with_projection"),
)
```

Retrieval / zero-shot with the full CLIP model:

```python
from transformers import CLIPModel, CLIPProcessor

model = CLIPModel.from_pretrained("{repo}")
processor = CLIPProcessor.from_pretrained("{repo}")
```
'''


def _metrics_table(results: dict | None) -> str:
    if not results:
        return "_No evaluation results recorded._"
    if "finetuned" in results and isinstance(results["finetuned"], dict):
        base, ft = results.get("base", {}), results["finetuned"]
        rows = ["| metric | base | this encoder |", "|---|---|---|"]
        rows += [f"| {k} | {base.get(k, float('nan')):.3f} | {v:.3f} |" for k, v in ft.items() if isinstance(v, (int, float))]
        return "\n".join(rows)
    rows = ["| metric | value |", "|---|---|"]
    rows += [f"| {k} | {v:.3f} |" for k, v in results.items() if isinstance(v, (int, float))]
    return "\n".join(rows)


def write_model_card(folder: str | Path, repo_id: str | None = None, base_model: str | None = None,
                     datasets: list[str] | None = None, license: str = "mit",
                     sd_base: str = "CompVis/stable-diffusion-v1-4",
                     sdxl_base: str = "stabilityai/stable-diffusion-xl-base-1.0") -> Path:
    """Write `README.md` in an encoder folder from its training_config.json and eval_results.json."""
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(folder)
    cfg = json.loads((folder / "training_config.json").read_text()) if (folder / "training_config.json").exists() else {}
    results = json.loads((folder / "eval_results.json").read_text()) if (folder / "eval_results.json").exists() else None
    repo = repo_id or str(folder)
    if base_model is None:
        base = str(cfg.get("base", ""))
        base_model = base if base.count("/") == 1 and not Path(base).exists() else None  # a Hub id, not a path
    data = ModelCardData(
        base_model=base_model,
        datasets=datasets,
        license=license,
        library_name="transformers",
        pipeline_tag="zero-shot-image-classification",
        tags=["clip", "negation", "text-encoder", "negation-encoder", "stable-diffusion"],
    )
    objectives = {k: cfg.get(k) for k in ("infonce", "hard_negatives", "mcq", "omni_presence", "omni_absence", "preserve") if k in cfg}
    training = "\n".join(f"- `{k}`: {cfg[k]}" for k in ("steps", "batch_size", "lr", "layers", "seed") if k in cfg)
    body = f"""---
{data.to_yaml()}
---

# Negation-aware CLIP text encoder

A CLIP model whose **text encoder** was fine-tuned (vision frozen) to understand negation ("a street
with no cars"), with the negation-encoder library. Only the text tower changed, so it drops
into Stable Diffusion 1.x / SDXL and CLIPSeg without retraining them.

## Training

Base model: `{cfg.get('base', 'unknown')}`. Objectives (weights): {json.dumps(objectives)}.

{training}

## Results

{_metrics_table(results)}

## Usage

{USAGE_TEMPLATE.format(repo=repo, repo_2=repo, sd_base=sd_base, sdxl_base=sdxl_base)}
"""
    card = ModelCard(body)
    card.save(folder / "README.md")
    return folder / "README.md"
