"""The model card of an encoder checkpoint folder.

Built with huggingface_hub's typed `ModelCardData` (base_model, datasets, license, tags, library_name,
pipeline_tag, and a model-index from eval_results.json through `negation_encoder.results`, which never
guesses what a key means); the body is rendered from `templates/model_card.md` with
`ModelCard.from_template`. What the card promises is computed from the encoder's own widths: it lists
the public pipelines whose CLIP slot this encoder fits and those it cannot replace, and shows usage only
for the ones it fits. A generated card carries a mark, so a hand-written README.md is never replaced. No
local path goes into a card: a local base or data file is named by its folder or file name.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .. import results as R
from ..configs import flatten
from ..errors import InputError
from ..runio import atomic_write_text
from . import layout

GENERATED_MARK = "<!-- negation-encoder:generated"
# Where the library's documentation is: it has no published URL, so the card names the docs by their path in
# the library's source tree.
DOCS = {"overview": "docs/", "integrations": "docs/integrations.md", "t2i": "docs/t2i.md",
        "segmentation": "docs/segmentation.md", "training": "docs/training.md"}
TEMPLATE = "model_card.md"
# (key in training_config.json, the flat key that folders written before the config had groups use)
HYPERPARAMETERS = (("optim.steps", "steps"), ("optim.batch_size", "batch_size"), ("optim.lr", "lr"),
                   ("model.layers", "layers"), ("optim.seed", "seed"), ("data.files", "data"))


@dataclass(frozen=True)
class Target:
    """A public model whose CLIP text slot a negation encoder may replace, with the widths it reads."""

    key: str
    name: str
    base: str
    role: str  # text_encoder | text_encoder_2 | clipseg
    hidden_size: int
    projection_dim: int | None = None  # only where the model reads the projected embedding


TARGETS = (
    Target("sd", "Stable Diffusion 1.x `text_encoder` (CLIP ViT-L/14)", "CompVis/stable-diffusion-v1-4",
           "text_encoder", 768),
    Target("sd2", "Stable Diffusion 2.x `text_encoder` (OpenCLIP ViT-H/14)", "stabilityai/stable-diffusion-2-1",
           "text_encoder", 1024),
    Target("sdxl", "SDXL `text_encoder` (CLIP ViT-L/14)", "stabilityai/stable-diffusion-xl-base-1.0",
           "text_encoder", 768),
    Target("sdxl_2", "SDXL `text_encoder_2` (OpenCLIP ViT-bigG/14)", "stabilityai/stable-diffusion-xl-base-1.0",
           "text_encoder_2", 1280, 1280),
    Target("flux", "Flux `text_encoder` (CLIP ViT-L/14; its T5 stays)", "black-forest-labs/FLUX.1-dev",
           "text_encoder", 768),
    Target("clipseg", "CLIPSeg (CLIP ViT-B/16 text tower)", "CIDAS/clipseg-rd64-refined", "clipseg", 512, 512),
)


def compatibility(hidden_size: int, projection_dim: int | None) -> tuple[list[Target], list[tuple[Target, str]]]:
    """(targets this encoder fits, [(target, why not)]), from the widths alone."""
    fits, misfits = [], []
    for t in TARGETS:
        why = []
        if hidden_size != t.hidden_size:
            why.append(f"text width {hidden_size}, needs {t.hidden_size}")
        if t.projection_dim is not None and projection_dim != t.projection_dim:
            why.append(f"projection {projection_dim}, needs {t.projection_dim}")
        (misfits.append((t, "; ".join(why))) if why else fits.append(t))
    return fits, misfits


# The recommended use with a diffusers pipeline: stacked with the training-free route. The prompt goes as
# written (this encoder reads the "no"), the negated concepts also go to the negative prompt, and the switch
# the pipeline needs for that (CFG > 1, Flux's true CFG) is set: `integrations.negation_kwargs`.
STACKED = '''image = pipe("a street with no cars", generator=torch.Generator().manual_seed(0)).images[0]  # this encoder alone
# recommended: stacked with the training-free route (the prompt as written, "cars" also as the negative prompt)
kwargs = negation_kwargs(pipe, "a street with no cars", keep_prompt=True)
image = pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images[0]'''

USAGE_SD = '''```python
import torch
from diffusers import StableDiffusionPipeline
from transformers import CLIPTextModel
from integrations import negation_kwargs  # from the negation-encoder library

text_encoder = CLIPTextModel.from_pretrained("{repo}", subfolder="text_encoder")
pipe = StableDiffusionPipeline.from_pretrained("{base}", text_encoder=text_encoder)
''' + STACKED + "\n```"

USAGE_SDXL = '''```python
import torch
from diffusers import StableDiffusionXLPipeline
from transformers import CLIPTextModel, CLIPTextModelWithProjection
from integrations import negation_kwargs  # from the negation-encoder library

pipe = StableDiffusionXLPipeline.from_pretrained(
    "{sdxl_base}",
    text_encoder=CLIPTextModel.from_pretrained("{repo}", subfolder="text_encoder"),
    text_encoder_2=CLIPTextModelWithProjection.from_pretrained("{repo_2}", subfolder="text_encoder_with_projection"),
)
''' + STACKED + "\n```"

USAGE_FLUX = '''```python
import torch
from diffusers import FluxPipeline
from transformers import CLIPTextModel
from integrations import negation_kwargs  # from the negation-encoder library

text_encoder = CLIPTextModel.from_pretrained("{repo}", subfolder="text_encoder")
pipe = FluxPipeline.from_pretrained("{flux_base}", text_encoder=text_encoder)  # its T5 stays
''' + STACKED + "\n```"

USAGE_CLIPSEG = '''```python
from transformers import CLIPModel, CLIPSegForImageSegmentation
from integrations import swap_clipseg_text_encoder  # from the negation-encoder library

seg = CLIPSegForImageSegmentation.from_pretrained("{clipseg_base}")
swap_clipseg_text_encoder(seg, CLIPModel.from_pretrained("{repo}"))
```'''

USAGE_CLIP = '''```python
from transformers import CLIPModel, CLIPProcessor

model = CLIPModel.from_pretrained("{repo}")
processor = CLIPProcessor.from_pretrained("{repo}")
```'''

DEFAULT_BASES = {"sd_base": "CompVis/stable-diffusion-v1-4", "sd2_base": "stabilityai/stable-diffusion-2-1",
                 "sdxl_base": "stabilityai/stable-diffusion-xl-base-1.0", "flux_base": "black-forest-labs/FLUX.1-dev",
                 "clipseg_base": "CIDAS/clipseg-rd64-refined"}


def usage_snippets(repo: str, repo_2: str | None = None, **bases: str) -> dict[str, str]:
    """Usage blocks rendered for `repo`, one per pipeline family (bases default to the public models). The
    SDXL block needs `repo_2`: SDXL's second encoder is a wider OpenCLIP bigG model, which this encoder is not."""
    fields = {**DEFAULT_BASES, **bases, "repo": repo, "repo_2": repo_2 or ""}
    out = {"clip": USAGE_CLIP.format(**fields), "sd": USAGE_SD.format(**fields, base=fields["sd_base"]),
           "sd2": USAGE_SD.format(**fields, base=fields["sd2_base"]), "flux": USAGE_FLUX.format(**fields),
           "clipseg": USAGE_CLIPSEG.format(**fields)}
    if repo_2:
        out["sdxl"] = USAGE_SDXL.format(**fields)
    return out


# ------------------------------------------------------------------------------------------------
# license

# Base models whose license this library knows, by Hub id prefix: OpenAI's CLIP checkpoints are MIT.
KNOWN_LICENSES = (("openai/clip-", "mit"),)
TESTBED_BASE = "negation-encoder testbed world CLIP"  # `training.checks.describe_base` of the world's CLIP
TESTBED_LICENSE = "mit"  # the world CLIP is this library's own (MIT, pyproject.toml)
_LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]*")


def check_license(value: str) -> str:
    """A Hub license id (lowercase, e.g. mit, apache-2.0, cc-by-4.0, other); one line otherwise."""
    if not _LICENSE_ID.fullmatch(value or ""):
        raise InputError(f"--license: expected a Hub license id such as mit, apache-2.0, cc-by-4.0 or other "
                         f"(lowercase, no spaces), got {value!r}")
    return value


def base_license(trained_from: str) -> tuple[str, str]:
    """(license id, the card's sentence about it) from the base model: a known license (OpenAI CLIP, the
    testbed world), the license a local base folder's own card declares, else `other` with a note."""
    if trained_from.startswith(TESTBED_BASE):
        return TESTBED_LICENSE, "`mit`: the base is the negation-encoder testbed's world CLIP (MIT)."
    for prefix, license_id in KNOWN_LICENSES:
        if trained_from.lower().startswith(prefix):
            return license_id, f"`{license_id}`, the license of the base model `{trained_from}`."
    declared = _declared_license(trained_from)
    if declared:
        return declared, f"`{declared}`, as the base model's own card declares."
    return "other", (f"`other`: the license of the base model ({public_name(trained_from)}) is not known to the "
                     "library that wrote this card. This encoder is a fine-tune of that model and falls under its "
                     "terms: check them (`negenc publish --license ID` sets the license).")


def _declared_license(base: str) -> str | None:
    """The `license` of a local base folder's README.md metadata, if it has one."""
    readme = Path(base) / layout.MODEL_CARD
    if not readme.is_file():
        return None
    from huggingface_hub import ModelCard

    try:
        value = ModelCard.load(readme).data.to_dict().get("license")
    except Exception:  # noqa: BLE001 - a card that does not parse declares nothing
        return None
    return value if isinstance(value, str) and _LICENSE_ID.fullmatch(value) else None


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def hub_id(name: str | None) -> str | None:
    """`name` if it reads as a Hub repo id (ORG/NAME, not a local path), else None."""
    if not name or name.count("/") != 1 or Path(name).exists() or name.startswith((".", "/", "~")):
        return None
    return name


def public_name(value: str) -> str:
    """What a card may say about a path or id: a Hub id as is, a local path by its last component."""
    if hub_id(value) or not value or "/" not in value and "\\" not in value:
        return value
    return Path(value).name


def is_generated_card(path: Path) -> bool:
    """True for a README.md this library wrote (it may be regenerated); False for a hand-written one."""
    return path.exists() and GENERATED_MARK in path.read_text(encoding="utf-8", errors="replace")


def _text_widths(folder: Path) -> tuple[int | None, int | None]:
    cfg = _read_json(folder / layout.CONFIG) or {}
    text = cfg.get("text_config") or {}
    return text.get("hidden_size"), cfg.get("projection_dim", text.get("projection_dim"))


def _results_table(res: dict | None) -> str:
    if not res:
        return "_No evaluation results recorded._"
    mine, base = R.headline(res), R.headline(res.get("baseline"))
    split, base_split = R.headline(res.get("split")), R.headline((res.get("baseline") or {}).get("split"))
    cols = [("this encoder", mine)] + ([("base", base)] if base else []) + \
        ([("this encoder + split reader", split)] if split else []) + ([("base + split reader", base_split)] if base_split else [])
    rows = ["| metric | " + " | ".join(c for c, _ in cols) + " |", "|---|" + "---:|" * len(cols)]
    for key in mine:
        info = R.REGISTRY[key]
        cells = [f"{d[key]:.3f}" if key in d else "-" for _, d in cols]
        rows.append(f"| {info.dataset_name}: {info.task_name} ({info.metric_name}) | " + " | ".join(cells) + " |")
    return "\n".join(rows)


FAMILY_NAMES = {"sd1": "Stable Diffusion 1.x", "sd2": "Stable Diffusion 2.x", "sdxl": "SDXL", "sd3": "SD3",
                "flux": "Flux", "clipseg": "CLIPSeg", "if": "an IF-style pipeline (the library's testbed generator)"}


def trained_for(pipeline: dict | None) -> str:
    """The pipeline reading the token-state terms were trained on (training_config.json's `pipeline`), in words."""
    if not isinstance(pipeline, dict) or pipeline.get("family") not in FAMILY_NAMES:
        return ""
    from ..conditioning import reading

    how = reading(pipeline["family"], pipeline.get("slot", "text_encoder"), pipeline.get("clip_skip") or None,
                  pipeline.get("length", 77))
    states = "no token states" if how.states_layer is None else (
        f"token states of hidden layer {how.states_layer}{' after the final norm' if how.final_norm else ''}, "
        f"{how.length} positions, {'with' if how.attention_mask else 'without'} the attention mask")
    skip = f", clip_skip {pipeline['clip_skip']}" if pipeline.get("clip_skip") else ""
    return f"{FAMILY_NAMES[pipeline['family']]}, slot `{pipeline.get('slot', 'text_encoder')}`{skip} ({states})"


def build_model_card(folder: str | Path, repo_id: str | None = None, base_model: str | None = None,
                     datasets: list[str] | None = None, license: str | None = None, model_name: str | None = None,
                     repo_2: str | None = None, **bases: str):
    """The model card of an encoder folder: typed metadata and a body rendered from the package's template.
    `license` None: the base model's where known (`base_license`), else `other` with a note."""
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(folder)
    cfg = _read_json(folder / layout.TRAINING_CONFIG) or {}
    res = R.read_results(folder / layout.EVAL_RESULTS)
    eval_results = R.card_eval_results(res) if res else []
    trained_from = str(cfg.get("base_model") or cfg.get("base") or "unknown")
    base_model = base_model or hub_id(trained_from)
    if license is None:
        license, license_text = base_license(base_model or trained_from)
    else:
        license_text = f"`{check_license(license)}` (set when the card was written)."
    repo = repo_id or folder.name
    name = model_name or (repo_id.split("/")[-1] if repo_id else folder.name)
    data = ModelCardData(
        base_model=base_model, datasets=datasets, license=license, library_name="transformers",
        pipeline_tag="zero-shot-image-classification", model_name=name if eval_results else None,
        eval_results=eval_results or None,
        tags=["clip", "negation", "text-encoder", "negation-encoder"],
    )
    hidden, proj = _text_widths(folder)
    fits, misfits = compatibility(hidden, proj) if hidden else ([], [])
    snip = usage_snippets(repo, repo_2, **bases)
    usage = [("Load the full CLIP model (retrieval, zero-shot, benchmarks):", snip["clip"])]
    fit_keys = {t.key for t in fits}
    for key, title in (("sd", "Stable Diffusion 1.x:"), ("sd2", "Stable Diffusion 2.x:"),
                       ("sdxl", "SDXL (both CLIP encoders replaced; the second from its own bigG-sized negation "
                                "encoder):"),
                       ("flux", "Flux (the CLIP encoder replaced; its T5 stays, and stacked it reads the "
                                "affirmative part while true CFG is turned on for the negative prompt):"),
                       ("clipseg", "CLIPSeg:")):
        if key in fit_keys and key in snip:
            usage.append((title, snip[key]))
    objectives = cfg.get("objectives") or {}
    flat = flatten(cfg)
    hyper = [(key, [public_name(str(x)) for x in v] if isinstance(v, list) else public_name(str(v)))
             for key, old in HYPERPARAMETERS for v in [flat.get(key, flat.get(old))] if v is not None]
    template = resources.files("negation_encoder").joinpath(f"templates/{TEMPLATE}").read_text(encoding="utf-8")
    return ModelCard.from_template(
        data, template_str=template, model_name=name,
        base_model=f"`{base_model}`" if base_model else trained_from if trained_from.startswith("negation-encoder")
        else f"`{public_name(trained_from)}` (a local checkpoint)",
        recipe=flat.get("run.recipe", cfg.get("recipe", "")), objectives=json.dumps(objectives), hyperparameters=hyper,
        trained_for=trained_for(cfg.get("pipeline")),
        widths=f"text width {hidden}, projection {proj}" if hidden else "unknown widths",
        fits=[t.name for t in fits], misfits=[(t.name, why) for t, why in misfits],
        results_table=_results_table(res), usage=usage, license_text=license_text, docs=DOCS,
        stacked=any(key in fit_keys for key in ("sd", "sd2", "sdxl", "flux")),
    )


def write_model_card(folder: str | Path, **kwargs) -> Path:
    """Write `README.md` into an encoder folder (atomically) from its training_config.json and
    eval_results.json. A hand-written README.md (no generated mark) is never replaced."""
    folder = Path(folder)
    path = folder / layout.MODEL_CARD
    if path.exists() and not is_generated_card(path):
        return path
    return atomic_write_text(path, str(build_model_card(folder, **kwargs)))


def card_text(folder: str | os.PathLike, **kwargs) -> str:
    return str(build_model_card(folder, **kwargs))
