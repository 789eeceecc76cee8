"""Everything a user can get wrong, checked before any compute: the config against the base model, the
output folder, a resumed run's config and data, record captions, image files, and which records feed each
enabled loss term (each term's `eligible` rule, from the records' fields, never string containment): a term
no record feeds stops the run, and the counts are the first line of `train_log.jsonl`. Each problem is
one `InputError` naming the culprit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint.sources import check_clip_model
from ..data.records import NegationRecord, RecordError, iter_numbered_records
from ..data.validation import record_length_problem, record_texts, token_counts
from ..encoding import image_size_problem
from ..errors import ConfigError, IncompatibleModelError, InputError
from .batching import Example, eligible_counts, examples_from_records
from .checkpoints import RunDir
from .config import TrainConfig, resume_conflicts
from .freezing import text_layer_indices
from .terms import CheckContext, LossTerm, term_class


def build_terms(cfg: TrainConfig) -> list[LossTerm]:
    """The enabled terms, in registry order (the order the objective sums them)."""
    return [term_class(name)(cfg.objective[name], cfg) for name in cfg.enabled_terms()]


def training_files(cfg: TrainConfig) -> list[str]:
    """Every data file the run reads (records, and what its terms read): a resumed run must find them
    unchanged (`data_fingerprint`)."""
    return [*cfg.data.files, *(f for t in build_terms(cfg) for f in t.data_files())]


def load_base_config(base: str):
    """The base's CLIPConfig, read without loading weights; a non-CLIPModel checkpoint is one line."""
    from transformers import AutoConfig

    if not base:
        raise InputError("no base model: pass --base (a CLIPModel folder or Hub id) or set `base` in the config")
    check_clip_model(base, "--base", " (the base whose text tower is fine-tuned)")  # before any Hub call
    try:
        config = AutoConfig.from_pretrained(base)
    except (OSError, ValueError) as e:
        raise InputError(f"--base {base}: cannot load its config ({str(e).splitlines()[0]})") from None
    if getattr(config, "model_type", None) != "clip":
        raise IncompatibleModelError(f"--base {base}: expected a CLIPModel checkpoint (model_type 'clip'), got "
                                     f"model_type {getattr(config, 'model_type', None)!r}")
    return config


def describe_base(base: str) -> str:
    """What the model was trained from, for the card: a Hub id as given; for a local folder, the Hub id
    it was saved from if it says so, the testbed's world CLIP, or the folder's absolute path."""
    path = Path(base)
    if not path.exists():
        return base
    if (path / "pretrain_info.json").exists():
        return "negation-encoder testbed world CLIP (`negenc testbed pretrain`)"
    try:
        name = json.loads((path / "config.json").read_text()).get("_name_or_path", "")
    except (OSError, json.JSONDecodeError):
        name = ""
    if isinstance(name, str) and name.count("/") == 1 and not Path(name).exists():
        return name
    return str(path.resolve())


@dataclass
class LoadedRecords:
    records: list[NegationRecord]
    where: list[str]  # "FILE:LINE" of each record, for error messages


def load_training_records(paths: list[str]) -> LoadedRecords:
    records, where = [], []
    seen: dict[str, str] = {}
    for p in paths:
        n = 0
        try:
            for line, r in iter_numbered_records(p):
                if r.id in seen:
                    raise InputError(f"{p}:{line}: record id {r.id!r} also appears at {seen[r.id]}")
                seen[r.id] = f"{p}:{line}"
                records.append(r)
                where.append(f"{p}:{line}")
                n += 1
        except RecordError as e:
            raise InputError(str(e)) from None
        if n == 0:
            raise InputError(f"{p}: no records (an empty data file)")
    if not records:
        raise InputError("no training records: pass --data FILE.jsonl or set `data` in the config")
    return LoadedRecords(records, where)


def check_caption_lengths(loaded: LoadedRecords, tokenizer) -> None:
    """Every text a record contributes must fit the encoder's positions (77 for CLIP)."""
    counts = token_counts((text for rec in loaded.records for _, text in record_texts(rec)), tokenizer)
    for rec, where in zip(loaded.records, loaded.where, strict=True):
        problem = record_length_problem(rec, limit=tokenizer.model_max_length, counts=counts)
        if problem:
            raise InputError(f"{where}: {problem}")


def data_fingerprint(paths: list[str]) -> str:
    """Hash of the training data's bytes: a resumed run must train on the same records."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:20]


def default_image_loader(root: str) -> Callable[[str], object]:
    from PIL import Image, UnidentifiedImageError

    def load(key: str):
        path = Path(root) / key
        try:
            return Image.open(path).convert("RGB")
        except FileNotFoundError:
            raise InputError(f"image {key!r} not found under --images {root} (looked for {path})") from None
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(f"{path}: cannot read image ({e})") from None

    return load


def check_images_exist(images: dict[str, str], root: str, image_processor=None,
                       model_image_size: int | None = None) -> None:
    """Every image (key -> "FILE:LINE" of the first record that names it) exists, and (when the processor
    passes sizes through) has the size the vision tower takes: both found before the image cache is built,
    not mid-run."""
    from PIL import Image, UnidentifiedImageError

    check_size = image_processor is not None and model_image_size is not None and \
        image_size_problem(image_processor, model_image_size, (-1, -1)) is not None
    for key, where in images.items():
        path = Path(root) / key
        if not path.is_file():
            raise InputError(f"{where}: image {key!r} not found under --images {root or '.'}")
        if check_size:
            try:
                with Image.open(path) as im:
                    problem = image_size_problem(image_processor, model_image_size, im.size)
            except (UnidentifiedImageError, OSError) as e:
                raise InputError(f"{where}: image {key!r} cannot be read ({e})") from None
            if problem:
                raise InputError(f"{where}: image {key!r} {problem}")


def check_eligible(terms: Sequence[LossTerm], examples: list[Example]) -> dict[str, int]:
    """Records feeding each enabled record-reading term; a term with weight > 0 that no record feeds would
    train silently without it, so the run stops here, before any compute."""
    counts = eligible_counts(examples, terms)
    empty = [t for t in terms if t.reads_records and counts[t.name] == 0]
    if empty:
        raise InputError("; ".join(f"{t.name}: no eligible record: {t.no_eligible_reason(len(examples))}"
                                   for t in empty))
    return counts


@dataclass
class RunInputs:
    """What the checks before compute found: the records, their examples, the enabled terms, the
    tokenizer and image processor, and the checkpoint a resumed run continues (None for a fresh run)."""

    records: list[NegationRecord]
    keys: list[str]  # image keys, in the order of the image-embedding table
    examples: list[Example]
    terms: list[LossTerm]
    tokenizer: object
    image_processor: object
    found: tuple[int, Path] | None
    fingerprint: str
    eligible: dict[str, int]  # records feeding each enabled record-reading term
    header: dict  # what the terms' own checks add to the log's first line

    @property
    def log_header(self) -> dict:
        """The first line of train_log.jsonl: what the run trains on, counted before compute."""
        return {"eligible": self.eligible, "records": len(self.records), **self.header}


def check_inputs(cfg: TrainConfig, accelerator, run: RunDir, resume: bool, overwrite: bool,
                 image_loader: Callable[[str], object] | None) -> RunInputs:
    """Everything a user can get wrong, checked before any compute (each problem is one InputError)."""
    from transformers import AutoImageProcessor, CLIPTokenizer

    if cfg.optim.batch_size % accelerator.num_processes:
        raise ConfigError(f"optim.batch_size={cfg.optim.batch_size} must be divisible by the "
                          f"{accelerator.num_processes} processes")
    base_config = load_base_config(cfg.model.base)
    try:
        text_layer_indices(cfg.model.layers, base_config.text_config.num_hidden_layers)
    except ValueError as e:
        raise ConfigError(f"config key 'model.layers': {e}") from None
    if accelerator.is_main_process:  # the other processes would see the main one's lock
        run.check(resume, overwrite)
    terms = build_terms(cfg)
    loaded = load_training_records(cfg.data.files)
    fingerprint = data_fingerprint(training_files(cfg))
    found = run.latest() if resume else None
    if found is not None:
        saved = RunDir.read_state(found[1])
        conflicts = resume_conflicts(saved.get("config", {}), cfg)
        if conflicts:
            raise InputError(f"--resume: the config differs from the checkpoint {found[1]} in {', '.join(conflicts)}; "
                             "resume with the same settings, or start a new run (--overwrite or another --out)")
        if saved.get("data_fingerprint") != fingerprint:
            raise InputError(f"--resume: the training data ({', '.join(cfg.data.files)}) changed since the checkpoint "
                             f"{found[1]}; resume on the same records, or start a new run")
    base = cfg.model.base
    try:
        tok_dir = Path(base) / "tokenizer"
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir if tok_dir.is_dir() else base)
        image_processor = AutoImageProcessor.from_pretrained(base)
    except (OSError, ValueError) as e:
        raise InputError(f"--base {base}: cannot load its tokenizer or image processor "
                         f"({str(e).splitlines()[0]})") from None
    check_caption_lengths(loaded, tokenizer)
    records = loaded.records
    examples = examples_from_records(records, terms)
    # the image table: each record's image, then the images terms add (distractors), first-seen order,
    # each with the record that names it first
    owner: dict[str, str] = {}
    for r, w in zip(records, loaded.where, strict=True):
        owner.setdefault(r.image, w)
    for t in terms:
        for ex, w in zip(examples, loaded.where, strict=True):
            for k in t.image_keys(ex):
                owner.setdefault(k, w)
    keys = list(owner)
    eligible = check_eligible(terms, examples)
    if image_loader is None:
        check_images_exist(owner, cfg.data.images, image_processor=image_processor,
                           model_image_size=base_config.vision_config.image_size)
    header: dict = {}
    ctx = CheckContext(cfg, base_config)
    for t in terms:
        header.update(t.check(ctx))
    return RunInputs(records, keys, examples, terms, tokenizer, image_processor, found, fingerprint, eligible, header)
