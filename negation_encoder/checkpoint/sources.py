"""What a model folder or Hub id holds, read from its config files before any weights load.

transformers loads a folder of another architecture into a CLIP class with random weights and a log line
(a BERT folder becomes a "CLIP text tower" that scores chance), so every place that loads a text encoder
or a CLIP model asks here first: integrations' `load_negation_text_encoder` and the CLIPSeg swap,
`negenc seg` / `negenc t2i --encoder`, `negenc eval --model`, `negenc train --base` and `negenc publish`.
A source is judged by its `config.json` (`model_type`, `architectures`), its `text_encoder/` and
`text_encoder_with_projection/` subfolders (the checkpoint layout, `layout`) and a diffusers
`model_index.json`; what is not a CLIP text tower is one `IncompatibleModelError` naming the folder and
what it is.

A value that reads as a local path (`looks_like_local_path`) and does not exist is refused at once, so a
mistyped folder never waits on Hub retries. A Hub id whose files cannot be read here (offline, gated) is
left to the loader, which says why.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import IncompatibleModelError, InputError
from . import layout

CLIP_TYPE = "clip"  # CLIPModel
CLIP_TEXT_TYPE = "clip_text_model"  # CLIPTextModel and CLIPTextModelWithProjection
CLIPSEG_TYPE = "clipseg"
PIPELINE_INDEX = "model_index.json"
EXPECTED_TOWER = ("a CLIPModel folder, a CLIPTextModel(WithProjection) folder or a negation-encoder checkpoint "
                  "folder (with text_encoder/, as `negenc train` writes under <out>/model)")


# ------------------------------------------------------------------------------------------------
# local paths


def looks_like_local_path(value: str | os.PathLike) -> bool:
    """True when `value` names a place on this machine rather than a Hub id: it starts with `.`, `/` or `~`,
    has more separators than one ORG/NAME (or the OS's own separator, where that is not `/`), or its
    first part exists here (`runs/bse` where `runs/` is a folder)."""
    text = str(value)
    if not text:
        return False
    if text.startswith((".", "/", "~")) or (os.sep != "/" and os.sep in text) \
            or (os.altsep not in (None, "/") and os.altsep in text):
        return True
    parts = text.split("/")
    return len(parts) > 2 or (len(parts) == 2 and Path(parts[0]).exists())


def check_source_exists(value: str | os.PathLike, flag: str) -> None:
    """A value that reads as a local path must exist: one line now, instead of Hub retries and a Hub error."""
    if looks_like_local_path(value) and not Path(value).expanduser().exists():
        parent = Path(value).expanduser().parent
        hint = f"{parent} exists but holds no {Path(value).name}" if parent.is_dir() and str(parent) != "." \
            else "nothing is there"
        raise InputError(f"{flag} {value}: no such folder ({hint}); a local path is never looked up on the Hub "
                         "(a Hub id is ORG/NAME)")


# ------------------------------------------------------------------------------------------------
# what a source holds


@dataclass(frozen=True)
class ModelConfig:
    """The parts of one config.json that say what a model is."""

    model_type: str | None
    architectures: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        arch = d.get("architectures") or ()
        return cls(d.get("model_type") if isinstance(d.get("model_type"), str) else None,
                   tuple(a for a in arch if isinstance(a, str)) if isinstance(arch, list) else ())

    @property
    def is_clip(self) -> bool:
        return self.model_type == CLIP_TYPE

    @property
    def is_clip_text(self) -> bool:
        return self.model_type == CLIP_TEXT_TYPE

    @property
    def has_projection(self) -> bool:
        """A text projection is saved with it: a CLIPModel, or a CLIPTextModelWithProjection."""
        return self.is_clip or (self.is_clip_text and "CLIPTextModelWithProjection" in self.architectures)

    def name(self, where: str = "model") -> str:
        """'a BertModel folder (model_type 'bert')', or as much of that as the config says."""
        arch = self.architectures[0] if self.architectures else None
        if arch and self.model_type:
            return f"a {arch} {where} (model_type {self.model_type!r})"
        if self.model_type:
            return f"a {where} of model_type {self.model_type!r}"
        return f"a {arch} {where} (no model_type)" if arch else \
            f"a {where} whose config.json has neither model_type nor architectures"


@dataclass(frozen=True)
class ModelSource:
    """What a folder or Hub id holds: its config, the configs of the checkpoint layout's text subfolders,
    and the pipeline class of a diffusers `model_index.json`. `known` is False for a Hub id whose files
    could not be read here: then nothing is claimed about it."""

    source: str
    local: bool
    known: bool = True
    exists: bool = True
    is_file: bool = False
    config: ModelConfig | None = None
    subfolders: dict[str, ModelConfig] = field(default_factory=dict)
    pipeline_class: str | None = None

    @property
    def where(self) -> str:
        return "folder" if self.local else "Hub repo"

    def describe(self) -> str:
        """What it is, in words: 'a BertModel (model_type 'bert') folder', 'a diffusers pipeline folder
        (StableDiffusionPipeline) with no text_encoder/', ..."""
        if self.is_file:
            return "a file, not a folder"
        if self.pipeline_class is not None:
            te = self.subfolders.get(layout.TEXT_ENCODER)
            inner = "with no text_encoder/" if te is None else "whose text_encoder/ is a CLIPTextModel" \
                if te.is_clip_text else f"whose text_encoder/ holds {te.name()}"
            return f"a diffusers pipeline {self.where} ({self.pipeline_class}) {inner}"
        if self.config is None:
            if not self.subfolders:
                return f"a {self.where} with no config.json"
            held = ", ".join(f"{sub}/ (a {c.architectures[0] if c.architectures else c.model_type})"
                             for sub, c in self.subfolders.items())
            return f"a {self.where} with no config.json, holding {held}"
        if self.is_checkpoint:
            return f"a negation-encoder checkpoint {self.where}"
        if self.config.is_clip:
            return f"a CLIPModel {self.where}"
        if self.config.is_clip_text:
            kind = self.config.architectures[0] if self.config.architectures else "CLIPTextModel"
            return f"a {kind} {self.where}"
        return self.config.name(self.where)

    @property
    def is_checkpoint(self) -> bool:
        """The checkpoint layout: a CLIPModel with its CLIP text_encoder/ beside it."""
        te = self.subfolders.get(layout.TEXT_ENCODER)
        return self.config is not None and self.config.is_clip and te is not None and te.is_clip_text


def _read_json(path: Path, source: str, flag: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{_prefix(flag)}{source}: {path.name} is not readable JSON ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    return obj if isinstance(obj, dict) else None


def _hub_json(repo: str, filename: str) -> dict | None:
    """One JSON file of a Hub repo (from the cache when offline); None when it cannot be had, for any reason."""
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(repo, filename)
        obj = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except Exception:  # noqa: BLE001 - missing file, offline, gated, bad id: the loader reports it
        return None
    return obj if isinstance(obj, dict) else None


SUBFOLDERS = (layout.TEXT_ENCODER, layout.TEXT_ENCODER_WITH_PROJECTION)


def read_source(source: str | os.PathLike, flag: str = "") -> ModelSource:
    """What `source` (a local folder or a Hub id) holds; refuses a local-looking path that does not exist."""
    text = str(source)
    check_source_exists(text, flag or "model")
    local = Path(text).expanduser()
    if local.exists():
        if local.is_file():
            return ModelSource(text, local=True, is_file=True)
        read = lambda name: _read_json(local / name, text, flag)  # noqa: E731
        is_local = True
    else:
        read = lambda name: _hub_json(text, name)  # noqa: E731
        is_local = False
    cfg = read(layout.CONFIG)
    subs = {sub: ModelConfig.from_dict(d) for sub in SUBFOLDERS if (d := read(f"{sub}/{layout.CONFIG}")) is not None}
    index = read(PIPELINE_INDEX) if cfg is None else None
    if not is_local and cfg is None and not subs and index is None:
        return ModelSource(text, local=False, known=False)
    pipeline = None
    if index is not None:
        pipeline = str(index.get("_class_name") or "unknown pipeline class")
    return ModelSource(text, local=is_local, config=ModelConfig.from_dict(cfg) if cfg is not None else None,
                       subfolders=subs, pipeline_class=pipeline)


def _prefix(flag: str) -> str:
    return f"{flag} " if flag else ""


# ------------------------------------------------------------------------------------------------
# the checks


@dataclass(frozen=True)
class TowerLocation:
    """Where the class a role needs loads from: `from_pretrained(path, subfolder=subfolder)`.
    `kind`: 'text' (CLIPTextModel), 'projection' (CLIPTextModelWithProjection) or 'clip' (CLIPModel)."""

    path: str
    subfolder: str | None
    kind: str
    source: ModelSource | None = None


# the role a text tower is loaded for -> what it needs
ROLE_NEEDS = {"text_encoder": "text", "text_encoder_2": "projection", "clipseg": "projection"}


def text_tower(source: str | os.PathLike, role: str = "text_encoder", flag: str = "") -> TowerLocation:
    """Where to load the text tower `role` needs from `source`, after checking that `source` is a CLIP text
    tower (`EXPECTED_TOWER`); anything else is one IncompatibleModelError naming it and what it is.

    `text_encoder` (a CLIPTextModel): the checkpoint's `text_encoder/`, else the folder's own CLIPModel or
    CLIPTextModel. `text_encoder_2` (a CLIPTextModelWithProjection): `text_encoder_with_projection/`, else a
    folder whose own weights carry the projection. `clipseg` (text tower and projection): the folder's
    CLIPModel or CLIPTextModelWithProjection, else `text_encoder_with_projection/`."""
    text = str(source)
    info = read_source(text, flag)
    need = ROLE_NEEDS[role]
    if not info.known:  # a Hub repo not readable here: the checkpoint layout, as the loader would assume
        sub = layout.ROLE_SUBFOLDER.get(role)
        return TowerLocation(text, sub, "clip" if role == "clipseg" else need, info)
    root, subs = info.config, info.subfolders
    te, tep = subs.get(layout.TEXT_ENCODER), subs.get(layout.TEXT_ENCODER_WITH_PROJECTION)
    if need == "text":
        if te is not None and te.is_clip_text:
            return TowerLocation(text, layout.TEXT_ENCODER, "text", info)
        if root is not None and (root.is_clip or root.is_clip_text):
            return TowerLocation(text, None, "text", info)
    elif role == "clipseg":
        if root is not None and root.is_clip:
            return TowerLocation(text, None, "clip", info)
        if root is not None and root.has_projection:
            return TowerLocation(text, None, "projection", info)
        if tep is not None and tep.has_projection:
            return TowerLocation(text, layout.TEXT_ENCODER_WITH_PROJECTION, "projection", info)
    else:
        if tep is not None and tep.has_projection:
            return TowerLocation(text, layout.TEXT_ENCODER_WITH_PROJECTION, "projection", info)
        if root is not None and root.has_projection:
            return TowerLocation(text, None, "projection", info)
    if info.is_file:
        raise IncompatibleModelError(f"{_prefix(flag)}{text}: a file, not a folder; expected {EXPECTED_TOWER}")
    clip_text = [c for c in (root, te, tep) if c is not None and c.is_clip_text]
    if clip_text and need == "projection":
        wants = "CLIPSeg" if role == "clipseg" else f"{role} (a CLIPTextModelWithProjection)"
        raise IncompatibleModelError(f"{_prefix(flag)}{text}: {info.describe()}; it has no text projection, which "
                                     f"{wants} needs; expected a CLIPModel, a CLIPTextModelWithProjection or a "
                                     "negation-encoder checkpoint folder (with text_encoder_with_projection/)")
    raise IncompatibleModelError(f"{_prefix(flag)}{text}: {info.describe()}, not a CLIP text tower; expected "
                                 f"{EXPECTED_TOWER}")


def check_clip_model(source: str | os.PathLike, flag: str, purpose: str = "") -> ModelSource:
    """`source` must be a full CLIPModel (both towers): a CLIPModel or a negation-encoder checkpoint.
    A Hub repo not readable here passes (its loader reports it)."""
    info = read_source(str(source), flag)
    if not info.known or (info.config is not None and info.config.is_clip):
        return info
    extra = " (a text tower alone has no vision tower)" if info.config is not None and info.config.is_clip_text \
        else ""
    raise IncompatibleModelError(f"{_prefix(flag)}{source}: {info.describe()}{extra}; expected a CLIPModel "
                                 f"checkpoint (model_type 'clip'){purpose}")


def check_encoder_checkpoint(folder: str | os.PathLike, flag: str = "") -> ModelSource:
    """`folder` must hold the checkpoint layout with CLIP configs: a CLIPModel and its CLIP `text_encoder/`."""
    info = read_source(str(folder), flag)
    if info.is_checkpoint:
        return info
    missing = [n for n in (layout.CONFIG, f"{layout.TEXT_ENCODER}/{layout.CONFIG}")
               if info.local and not (Path(folder) / n).is_file()]
    why = f" (missing {', '.join(missing)})" if missing else ""
    raise IncompatibleModelError(f"{_prefix(flag)}{folder}: {info.describe()}{why}, not a negation-encoder "
                                 "checkpoint folder; expected a CLIPModel config.json with a CLIP text_encoder/ "
                                 "beside it (what `negenc train` writes under <out>/model)")


def check_clipseg(source: str | os.PathLike, flag: str) -> ModelSource:
    """`source` must be a CLIPSeg model (model_type 'clipseg'); a Hub repo not readable here passes."""
    info = read_source(str(source), flag)
    if not info.known or (info.config is not None and info.config.model_type == CLIPSEG_TYPE):
        return info
    raise IncompatibleModelError(f"{_prefix(flag)}{source}: {info.describe()}, not a CLIPSeg model; expected a "
                                 "CLIPSegForImageSegmentation folder or Hub id (model_type 'clipseg')")


def check_pipeline_folder(source: str | os.PathLike, flag: str) -> ModelSource:
    """A local diffusers pipeline folder must have every component folder its model_index.json lists."""
    info = read_source(str(source), flag)
    if not info.local or info.is_file:
        return info
    folder = Path(source).expanduser()
    index = _read_json(folder / PIPELINE_INDEX, str(source), flag)
    if index is None:
        raise InputError(f"{flag} {source}: {info.describe()} and no {PIPELINE_INDEX}; expected a diffusers "
                         "pipeline folder (what DiffusionPipeline.save_pretrained writes)")
    listed = [k for k, v in index.items() if isinstance(v, list) and len(v) == 2 and v[0] and v[1]]
    missing = [k for k in listed if not (folder / k).is_dir()]
    if missing:
        raise InputError(f"{flag} {source}: a diffusers pipeline folder ({index.get('_class_name')}) whose "
                         f"{PIPELINE_INDEX} lists {', '.join(missing)}, but there is no "
                         f"{', '.join(m + '/' for m in missing)} folder; expected every listed component's folder")
    return info


__all__ = ["EXPECTED_TOWER", "ModelConfig", "ModelSource", "TowerLocation", "check_clip_model", "check_clipseg",
           "check_encoder_checkpoint", "check_pipeline_folder", "check_source_exists", "looks_like_local_path",
           "read_source", "text_tower"]
