"""Model cards and Hub publishing for encoder checkpoint folders.

The card is built with huggingface_hub's typed `ModelCardData` (base_model, datasets, license, tags,
library_name, pipeline_tag, and a model-index from eval_results.json), and its body carries
copy-paste usage for SD 1.x, SDXL and CLIPSeg. Publishing stages the folder with the card for the
target repo and pushes it in one `upload_folder` commit; pickle weights are refused unless allowed.
The token comes from the environment or the HF login and is never printed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

USAGE_SD = '''```python
import torch
from diffusers import StableDiffusionPipeline
from transformers import CLIPTextModel

text_encoder = CLIPTextModel.from_pretrained("{repo}", subfolder="text_encoder")
pipe = StableDiffusionPipeline.from_pretrained("{sd_base}", text_encoder=text_encoder)
image = pipe("a street with no cars", generator=torch.Generator().manual_seed(0)).images[0]
```'''

USAGE_SDXL = '''```python
import torch
from diffusers import StableDiffusionXLPipeline
from transformers import CLIPTextModel, CLIPTextModelWithProjection

pipe = StableDiffusionXLPipeline.from_pretrained(
    "{sdxl_base}",
    text_encoder=CLIPTextModel.from_pretrained("{repo}", subfolder="text_encoder"),
    text_encoder_2=CLIPTextModelWithProjection.from_pretrained("{repo_2}", subfolder="text_encoder_with_projection"),
)
image = pipe("a bowl of fruit without bananas", generator=torch.Generator().manual_seed(0)).images[0]
```'''

USAGE_CLIPSEG = '''```python
from transformers import CLIPModel, CLIPSegForImageSegmentation
from integrations import swap_clipseg_text_encoder  # pip install negation-encoder

seg = CLIPSegForImageSegmentation.from_pretrained("{clipseg_base}")
swap_clipseg_text_encoder(seg, CLIPModel.from_pretrained("{repo}"))
```'''

DEFAULT_BASES = {
    "sd_base": "CompVis/stable-diffusion-v1-4",
    "sdxl_base": "stabilityai/stable-diffusion-xl-base-1.0",
    "clipseg_base": "CIDAS/clipseg-rd64-refined",
}


def usage_snippets(repo: str, repo_2: str | None = None, **bases: str) -> dict[str, str]:
    """The card's usage blocks, rendered for `repo` (and bases, which default to the public models)."""
    fields = {**DEFAULT_BASES, **bases, "repo": repo, "repo_2": repo_2 or repo}
    return {"sd": USAGE_SD.format(**fields), "sdxl": USAGE_SDXL.format(**fields), "clipseg": USAGE_CLIPSEG.format(**fields)}


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _metrics(results: dict | None) -> tuple[dict, dict]:
    """(base metrics, this encoder's metrics) from eval_results.json or a demo results.json."""
    if not results:
        return {}, {}
    if isinstance(results.get("finetuned"), dict):
        return results.get("base", {}), results["finetuned"]
    return {}, {k: v for k, v in results.items() if isinstance(v, (int, float))}


def build_model_card(folder: str | Path, repo_id: str | None = None, base_model: str | None = None,
                     datasets: list[str] | None = None, license: str = "mit", model_name: str | None = None,
                     **bases: str):
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from .eval.results import card_eval_results, has_benchmark_keys

    folder = Path(folder)
    cfg = _read_json(folder / "training_config.json") or {}
    results = _read_json(folder / "eval_results.json")
    base_metrics, metrics = _metrics(results)
    if base_model is None:
        base = str(cfg.get("base", ""))
        base_model = base if base.count("/") == 1 and not Path(base).exists() else None  # a Hub id, not a path
    repo = repo_id or str(folder)
    name = model_name or (repo_id.split("/")[-1] if repo_id else folder.name)
    benchmark = "negenc testbed" if "heldout_mcq" in metrics else "negation benchmarks"
    eval_results = card_eval_results(results) if has_benchmark_keys(results) else [
        EvalResult(task_type="zero-shot-image-classification", dataset_type="negation-encoder/testbed"
                   if benchmark == "negenc testbed" else "custom", dataset_name=benchmark, metric_type=k,
                   metric_name=k, metric_value=round(float(v), 4))
        for k, v in metrics.items()
    ]
    data = ModelCardData(
        base_model=base_model, datasets=datasets, license=license, library_name="transformers",
        pipeline_tag="zero-shot-image-classification", model_name=name if eval_results else None,
        eval_results=eval_results or None,
        tags=["clip", "negation", "text-encoder", "negation-encoder", "stable-diffusion", "clipseg"],
    )
    objectives = {k: cfg[k] for k in ("infonce", "hard_negatives", "mcq", "omni_presence", "omni_absence", "preserve")
                  if k in cfg}
    hyper = "\n".join(f"- `{k}`: {cfg[k]}" for k in ("steps", "batch_size", "lr", "layers", "seed", "data") if k in cfg)
    if metrics:
        rows = ["| metric | base | this encoder |", "|---|---:|---:|"]
        rows += [f"| {k} | {base_metrics[k]:.3f} | {v:.3f} |" if k in base_metrics else f"| {k} | - | {v:.3f} |"
                 for k, v in metrics.items()]
        table = "\n".join(rows)
    else:
        table = "_No evaluation results recorded._"
    snip = usage_snippets(repo, **bases)
    body = f"""---
{data.to_yaml()}
---

# {name}: a negation-aware CLIP text encoder

A CLIP model whose **text encoder** was fine-tuned, vision frozen, to understand negation
("a street with no cars"), with the negation-encoder library. Only the text tower changed, so it
drops into Stable Diffusion 1.x / SDXL and CLIPSeg without retraining them.

## Training

Base model: `{cfg.get('base', 'unknown')}`. Objectives (weights): `{json.dumps(objectives)}`.

{hyper}

## Results ({benchmark})

{table}

## Usage

Stable Diffusion 1.x:

{snip['sd']}

SDXL (both CLIP encoders replaced, as in the NegationCLIP paper):

{snip['sdxl']}

CLIPSeg:

{snip['clipseg']}
"""
    return ModelCard(body)


def write_model_card(folder: str | Path, **kwargs) -> Path:
    """Write `README.md` into an encoder folder from its training_config.json and eval_results.json."""
    folder = Path(folder)
    build_model_card(folder, **kwargs).save(folder / "README.md")
    return folder / "README.md"


@dataclass
class PublishResult:
    repo_id: str
    files: list[str] = field(default_factory=list)
    dry_run: bool = True
    url: str | None = None


def publish(folder: str | Path, repo_id: str, dry_run: bool = False, allow_pickle: bool = False,
            private: bool | None = None, api=None, **card_kwargs) -> PublishResult:
    """Push an encoder folder to the Hub in one commit (or, with dry_run, write the card and list files)."""
    from .errors import InputError

    folder = Path(folder)
    if not (folder / "config.json").exists() or not (folder / "text_encoder").is_dir():
        raise InputError(f"{folder}: not an encoder checkpoint folder (expected config.json and text_encoder/)")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise InputError(f"--repo-id must look like ORG/NAME, got {repo_id!r}")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickles and not allow_pickle:
        raise InputError(f"{folder}: refusing to upload pickle weights ({', '.join(pickles[:3])}); "
                         "convert them to safetensors or pass --allow-pickle")
    card = build_model_card(folder, repo_id=repo_id, **card_kwargs)
    if dry_run:
        card.save(folder / "README.md")
        files = sorted(set(files) | {"README.md"})
        return PublishResult(repo_id, files, dry_run=True)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()  # token from HF_TOKEN or the saved login; never printed
    with tempfile.TemporaryDirectory() as stage:
        staged = Path(stage) / "repo"
        shutil.copytree(folder, staged)
        card.save(staged / "README.md")
        files = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file())
        url = api.create_repo(repo_id, exist_ok=True, private=private)
        api.upload_folder(repo_id=repo_id, folder_path=str(staged), commit_message="Upload negation-aware CLIP encoder")
    return PublishResult(repo_id, files, dry_run=False, url=str(url))
