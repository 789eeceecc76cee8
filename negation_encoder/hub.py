"""Model cards and Hub publishing for encoder checkpoint folders.

The card is built with huggingface_hub's typed `ModelCardData` (base_model, datasets, license, tags,
library_name, pipeline_tag, and a model-index from eval_results.json); its body is rendered from
`templates/model_card.md` with `ModelCard.from_template` and carries copy-paste usage for SD 1.x, SDXL
and CLIPSeg. A generated card carries a mark, so a hand-written README.md is never replaced. Publishing
stages a copy of the folder with the card for the target repo and pushes it in one `upload_folder`
commit; pickle weights are refused unless allowed; a dry run writes nothing.
The token comes from the environment or the HF login and is never printed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
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


GENERATED_MARK = "<!-- negation-encoder:generated"
TEMPLATE = "model_card.md"
HYPERPARAMETERS = ("steps", "batch_size", "lr", "layers", "seed", "data")


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _metrics(results: dict | None) -> tuple[dict, dict]:
    """(base metrics, this encoder's metrics) from eval_results.json or a demo results.json."""
    if not results:
        return {}, {}
    if isinstance(results.get("finetuned"), dict):
        return results.get("base", {}), results["finetuned"]
    return {}, {k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _hub_id(name: str | None) -> str | None:
    """`name` if it reads as a Hub repo id (ORG/NAME, not a local path), else None."""
    if not name or name.count("/") != 1 or Path(name).exists() or name.startswith((".", "/")):
        return None
    return name


def is_generated_card(path: Path) -> bool:
    """True for a README.md this library wrote (it may be regenerated); False for a hand-written one."""
    return path.exists() and GENERATED_MARK in path.read_text(encoding="utf-8", errors="replace")


def build_model_card(folder: str | Path, repo_id: str | None = None, base_model: str | None = None,
                     datasets: list[str] | None = None, license: str = "mit", model_name: str | None = None,
                     **bases: str):
    """The model card of an encoder folder: typed metadata (`ModelCardData`, `EvalResult`s for the
    model-index) and a body rendered from the package's template."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from .eval.results import card_eval_results, has_benchmark_keys
    from .training.losses import TERMS

    folder = Path(folder)
    cfg = _read_json(folder / "training_config.json") or {}
    results = _read_json(folder / "eval_results.json")
    base_metrics, metrics = _metrics(results)
    trained_from = str(cfg.get("base_model") or cfg.get("base") or "unknown")
    base_model = base_model or _hub_id(trained_from)
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
    if metrics:
        rows = ["| metric | base | this encoder |", "|---|---:|---:|"]
        rows += [f"| {k} | {base_metrics[k]:.3f} | {v:.3f} |" if k in base_metrics else f"| {k} | - | {v:.3f} |"
                 for k, v in metrics.items() if not k.endswith("_items")]
        table = "\n".join(rows)
    else:
        table = "_No evaluation results recorded._"
    snip = usage_snippets(repo, **bases)
    template = resources.files("negation_encoder").joinpath(f"templates/{TEMPLATE}").read_text(encoding="utf-8")
    return ModelCard.from_template(
        data, template_str=template, model_name=name,
        base_model=f"`{base_model}`" if base_model else trained_from if trained_from.startswith("negation-encoder")
        else f"`{trained_from}`",
        recipe=cfg.get("recipe", ""),
        objectives=json.dumps({k: cfg[k] for k in TERMS if k in cfg} | (
            {"hard_negatives": cfg["hard_negatives"]} if "hard_negatives" in cfg else {})),
        hyperparameters=[(k, cfg[k]) for k in HYPERPARAMETERS if k in cfg],
        benchmark=benchmark, results_table=table,
        usage_sd=snip["sd"], usage_sdxl=snip["sdxl"], usage_clipseg=snip["clipseg"],
    )


def write_model_card(folder: str | Path, **kwargs) -> Path:
    """Write `README.md` into an encoder folder (atomically) from its training_config.json and
    eval_results.json. A hand-written README.md (no generated mark) is never replaced."""
    folder = Path(folder)
    path = folder / "README.md"
    if path.exists() and not is_generated_card(path):
        return path
    tmp = folder / "README.md.tmp"
    build_model_card(folder, **kwargs).save(tmp)
    os.replace(tmp, path)
    return path


@dataclass
class PublishResult:
    repo_id: str
    files: list[str] = field(default_factory=list)
    dry_run: bool = True
    url: str | None = None
    card: str = ""  # the README.md text that is (or would be) uploaded
    card_generated: bool = True  # False: the folder's hand-written README.md is uploaded as it is


def publish(folder: str | Path, repo_id: str, dry_run: bool = False, allow_pickle: bool = False,
            private: bool | None = None, api=None, **card_kwargs) -> PublishResult:
    """Push an encoder folder to the Hub in one commit from a staging copy (the folder itself is never
    changed). The card is generated for `repo_id`, unless the folder has a hand-written README.md,
    which is uploaded as it is. With `dry_run`, nothing is written or uploaded: the result lists the
    files and the card text."""
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
    readme = folder / "README.md"
    generated = not readme.exists() or is_generated_card(readme)
    card_text = str(build_model_card(folder, repo_id=repo_id, **card_kwargs)) if generated else \
        readme.read_text(encoding="utf-8")
    files = sorted(set(files) | {"README.md"})
    if dry_run:
        return PublishResult(repo_id, files, dry_run=True, card=card_text, card_generated=generated)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()  # token from HF_TOKEN or the saved login; never printed
    with tempfile.TemporaryDirectory() as stage:
        staged = Path(stage) / "repo"
        shutil.copytree(folder, staged)
        (staged / "README.md").write_text(card_text, encoding="utf-8")
        files = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file())
        url = api.create_repo(repo_id, exist_ok=True, private=private)
        api.upload_folder(repo_id=repo_id, folder_path=str(staged), commit_message="Upload negation-aware CLIP encoder")
    return PublishResult(repo_id, files, dry_run=False, url=str(url), card=card_text, card_generated=generated)
