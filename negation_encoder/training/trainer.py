"""The fine-tuning loop on accelerate: text tower only, image embeddings from the cache.

One process:   negenc train --config cfg.yaml
Many GPUs:     accelerate launch -m negation_encoder.cli train --config cfg.yaml
Many nodes:    accelerate launch --num_machines N --machine_rank R --main_process_ip IP ... (same)
CPU, 2 procs:  torchrun --nproc_per_node 2 -m negation_encoder.cli train --config cfg.yaml

`batch_size` is the global batch: each process takes its slice, and the contrastive terms see every
process's texts (gathered with gradients), so N processes train the same weights as one process.
Everything a user can get wrong (config values, the base model's type and layer count, the output
folder, a resumed run's config and data, record captions, image files) is checked before the image
cache is built, and so is which records feed each enabled loss term (`batching.eligibility`, from the
records' fields, never string containment): a term no record feeds stops the run, and the counts are
the first line of `train_log.jsonl`. Checkpoints (`<out>/checkpoints/step_N`) are written atomically,
and `resume=True` continues from the newest one with the same data order, optimizer, scheduler and RNG.

Shape: `check_inputs` (no compute) -> `setup` (a `TrainState`: base, image cache, per-example targets,
tower, optimizer, schedule) -> `train_step` per optimizer step in a short loop (log, checkpoint) -> export.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data.records import NegationRecord, RecordError, iter_numbered_records
from ..data.validation import record_length_problem, record_texts, token_counts
from ..encoding import image_size_problem
from ..errors import InputError, RunFailed
from ..image_cache import ImageEmbeddingCache
from .batching import (
    Batch,
    Example,
    ExampleTargets,
    TokenTable,
    all_texts,
    batch_indices,
    collate,
    distractor_keys,
    eligible_counts,
    examples_from_records,
    of_sources,
    of_types,
    states_tokens,
)
from .config import TrainConfig, resume_conflicts
from .downstream import (
    FrozenDenoiser,
    FrozenSegmenter,
    SegInputs,
    affirmative_targets,
    check_seg_inputs,
    check_unet_inputs,
)
from .freezing import configure_trainable, text_layer_indices
from .losses import TERMS
from .objective import NegationObjective
from .run_dir import RunDir, atomic_write_text

LOGIT_SCALE_MAX = math.log(100.0)


class TextTower(nn.Module):
    """The trainable side of a CLIPModel: text transformer, text projection and logit scale.

    Wrapping them in one module lets accelerate/DDP see every trainable parameter in one forward.
    """

    def __init__(self, text_model: nn.Module, text_projection: nn.Module, logit_scale: nn.Parameter,
                 learn_logit_scale: bool):
        super().__init__()
        self.text_model = text_model
        self.text_projection = text_projection
        self.logit_scale = nn.Parameter(logit_scale.detach().clone(), requires_grad=learn_logit_scale)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                states_ids: torch.Tensor | None = None, states_mask: torch.Tensor | None = None,
                seg_ids: torch.Tensor | None = None, seg_mask: torch.Tensor | None = None):
        """(normalised embeddings, last hidden states) of the batch's texts, plus, in the same forward (one
        forward per step keeps DDP's gradient bookkeeping simple), the hidden states of `states_ids` at the
        pipeline's padding (omit_states) and the UNnormalised projected embeddings of `seg_ids` (CLIPSeg's
        conditional embeddings, seg_loss)."""
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask)
        emb = F.normalize(self.text_projection(out.pooler_output), dim=-1)
        states = seg = None
        if states_ids is not None:
            states = self.text_model(input_ids=states_ids, attention_mask=states_mask).last_hidden_state
        if seg_ids is not None:
            seg = self.text_projection(self.text_model(input_ids=seg_ids, attention_mask=seg_mask).pooler_output)
        return emb, out.last_hidden_state, states, seg


@dataclass
class TrainResult:
    out: Path
    steps: int
    log: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int | None = None
    eligible: dict[str, int] = field(default_factory=dict)  # records feeding each enabled term
    records: int = 0

    @property
    def model_dir(self) -> Path:
        return self.out / "model"


# ---------------------------------------------------------------------------------------------
# checks before any compute


def load_base_config(base: str):
    """The base's CLIPConfig, read without loading weights; a non-CLIPModel checkpoint is one line."""
    from transformers import AutoConfig

    if not base:
        raise InputError("no base model: pass --base (a CLIPModel folder or Hub id) or set `base` in the config")
    path = Path(base)
    if path.exists() and not (path / "config.json").is_file():
        raise InputError(f"--base {base}: no config.json in this folder (expected a CLIPModel checkpoint)")
    try:
        config = AutoConfig.from_pretrained(base)
    except (OSError, ValueError) as e:
        raise InputError(f"--base {base}: cannot load its config ({str(e).splitlines()[0]})") from None
    if getattr(config, "model_type", None) != "clip":
        raise InputError(f"--base {base}: expected a CLIPModel checkpoint (model_type 'clip'), got model_type "
                         f"{getattr(config, 'model_type', None)!r}")
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


RECORD_FREE_TERMS = ("seg_loss",)  # terms fed by other data (ReferringRecords), checked by their own rule


def enabled_terms(cfg: TrainConfig) -> list[str]:
    """The enabled terms that NegationRecords feed."""
    return [t for t in TERMS if getattr(cfg, t) > 0 and t not in RECORD_FREE_TERMS]


def no_eligible_reason(term: str, examples: list[Example]) -> str:
    """Why no record feeds `term` (it has weight > 0 and zero eligible records), for the one-line error."""
    n = len(examples)
    if term == "infonce":
        return (f"all {n} true captions are bare negations (they affirm nothing; set infonce_on_bare: true "
                "to use them)")
    why = {
        "mcq": f"none of the {n} records has foils (hard_negatives, or a presence record)",
        "omni_presence": f"none of the {n} records is a presence record (negation_type 'presence')",
        "omni_absence": f"none of the {n} records is an absence record (negation_type 'absence')",
        "distractor": f"none of the {n} records other than presence ones lists distractor_images (of the negation "
                      "types and sources distractor_types / distractor_sources name, when given)",
        "split_distill": f"the negation splitter finds no negation in any of the {n} true captions",
        "omit_states": f"the negation splitter finds no negation in any of the {n} true captions",
        "unet_loss": f"the negation splitter finds no negation in any of the {n} true captions",
    }.get(term, f"none of the {n} records")
    return f"{why}; set {term}: 0 to train without it"


def check_eligible(cfg: TrainConfig, examples: list[Example]) -> dict[str, int]:
    """Records feeding each enabled term (`batching.eligibility`); a term with weight > 0 that no
    record feeds would train silently without it, so the run stops here, before any compute."""
    counts = eligible_counts(examples, enabled_terms(cfg))
    empty = [t for t, c in counts.items() if c == 0]
    if empty:
        raise InputError("; ".join(f"{t}: no eligible record: {no_eligible_reason(t, examples)}" for t in empty))
    return counts


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


def check_images_exist(loaded: LoadedRecords, root: str, distractors: bool = False, image_processor=None,
                       model_image_size: int | None = None) -> None:
    """Every image the records name exists, and (when the processor passes sizes through) has the size
    the vision tower takes: both found before the image cache is built, not mid-run."""
    from PIL import Image, UnidentifiedImageError

    check_size = image_processor is not None and model_image_size is not None and \
        image_size_problem(image_processor, model_image_size, (-1, -1)) is not None
    seen: set[str] = set()
    for rec, where in zip(loaded.records, loaded.where, strict=True):
        for key in (rec.image, *(distractor_keys(rec) if distractors else ())):
            if key in seen:
                continue
            seen.add(key)
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


# ---------------------------------------------------------------------------------------------
# the loop


def _scheduler(optimizer, cfg: TrainConfig):
    """Linear warmup, then cosine to lr * min_lr_ratio: transformers' schedule, counting optimizer steps."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    return get_cosine_with_min_lr_schedule_with_warmup(optimizer, num_warmup_steps=cfg.warmup_steps,
                                                       num_training_steps=cfg.steps, min_lr_rate=cfg.min_lr_ratio)


@dataclass
class RunInputs:
    """What the checks before compute found: the records, their examples, the tokenizer and image
    processor, and the checkpoint a resumed run continues (None for a fresh run)."""

    records: list[NegationRecord]
    keys: list[str]  # image keys, in the order of the image-embedding table
    examples: list[Example]
    tokenizer: object
    image_processor: object
    found: tuple[int, Path] | None
    fingerprint: str
    eligible: dict[str, int]  # records feeding each enabled term
    seg: SegInputs | None = None  # seg_loss: the referring records and the frozen CLIPSeg to train through

    @property
    def log_header(self) -> dict:
        """The first line of train_log.jsonl: what the run trains on, counted before compute."""
        head = {"eligible": self.eligible, "records": len(self.records)}
        if self.seg is not None:
            head["referring_records"] = len(self.seg.records)
        return head


def check_inputs(cfg: TrainConfig, accelerator, run: RunDir, resume: bool, overwrite: bool,
                 image_loader: Callable[[str], object] | None) -> RunInputs:
    """Everything a user can get wrong, checked before any compute (each problem is one InputError)."""
    from transformers import AutoImageProcessor, CLIPTokenizer

    if cfg.batch_size % accelerator.num_processes:
        raise InputError(f"batch_size={cfg.batch_size} must be divisible by the {accelerator.num_processes} processes")
    base_config = load_base_config(cfg.base)
    try:
        text_layer_indices(cfg.layers, base_config.text_config.num_hidden_layers)
    except ValueError as e:
        raise InputError(f"config key 'layers': {e}") from None
    if accelerator.is_main_process:  # the other processes would see the main one's lock
        run.check(resume, overwrite)
    loaded = load_training_records(cfg.data)
    fingerprint = data_fingerprint([*cfg.data, *cfg.seg_data])
    found = run.latest() if resume else None
    if found is not None:
        saved = RunDir.read_state(found[1])
        conflicts = resume_conflicts(saved.get("config", {}), cfg)
        if conflicts:
            raise InputError(f"--resume: the config differs from the checkpoint {found[1]} in {', '.join(conflicts)}; "
                             "resume with the same settings, or start a new run (--overwrite or another --out)")
        if saved.get("data_fingerprint") != fingerprint:
            raise InputError(f"--resume: the training data ({', '.join(cfg.data)}) changed since the checkpoint "
                             f"{found[1]}; resume on the same records, or start a new run")
    try:
        tok_dir = Path(cfg.base) / "tokenizer"
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir if tok_dir.is_dir() else cfg.base)
        image_processor = AutoImageProcessor.from_pretrained(cfg.base)
    except (OSError, ValueError) as e:
        raise InputError(f"--base {cfg.base}: cannot load its tokenizer or image processor "
                         f"({str(e).splitlines()[0]})") from None
    check_caption_lengths(loaded, tokenizer)
    records = loaded.records
    # distractor images are embedded only for the records whose type and source the term trains on
    counterfactual = [r for r in records if of_types(r, cfg.distractor_types) and of_sources(r, cfg.distractor_sources)]
    keys = list(dict.fromkeys([r.image for r in records]
                              + ([k for r in counterfactual for k in distractor_keys(r)] if cfg.distractor else [])))
    examples = examples_from_records(records, {k: i for i, k in enumerate(keys)}, bool(cfg.distractor),
                                     cfg.infonce_on_bare, cfg.omit_types, cfg.distractor_types, cfg.distractor_sources)
    eligible = check_eligible(cfg, examples)
    if image_loader is None:
        check_images_exist(loaded, cfg.images, distractors=bool(cfg.distractor), image_processor=image_processor,
                           model_image_size=base_config.vision_config.image_size)
    seg = check_seg_inputs(cfg, base_config) if cfg.seg_loss else None
    if cfg.unet_loss:
        check_unet_inputs(cfg, base_config)
    return RunInputs(records, keys, examples, tokenizer, image_processor, found, fingerprint, eligible, seg)


@dataclass
class TrainState:
    """Everything `train_step` needs, built once by `setup`. `tower`, `optimizer` and `scheduler` are
    accelerate's prepared objects; `model` is the CLIPModel whose text tower `tower` trains."""

    cfg: TrainConfig
    accelerator: object
    run: RunDir
    model: nn.Module
    tower: nn.Module
    params: list[nn.Parameter]  # the trainable parameters (clipped together)
    trainable: list[str]  # their names, for the model card
    optimizer: torch.optim.Optimizer
    scheduler: object
    objective: NegationObjective
    examples: list[Example]
    table: TokenTable
    targets: ExampleTargets  # image-embedding table and per-example targets, fixed before any step
    base_text: nn.Module | None  # the frozen base text tower (preserve, omit_states)
    start_step: int = 0
    seg: FrozenSegmenter | None = None  # seg_loss's frozen CLIPSeg and referring samples
    unet: FrozenDenoiser | None = None  # unet_loss's frozen UNet
    keys: list[str] = field(default_factory=list)  # image keys of the image table (unet_loss reads the images)
    empty_states: torch.Tensor | None = None  # (1, L, D) the base's states of the empty prompt (held fixed)

    def batch(self, step: int, micro: int) -> Batch:
        """This process's slice of micro-batch `micro` of optimizer step `step`, with its targets."""
        cfg, acc = self.cfg, self.accelerator
        idx = batch_indices(step, micro, len(self.examples), cfg.batch_size, cfg.grad_accum, cfg.seed)
        local = cfg.batch_size // acc.num_processes
        mine = idx[acc.process_index * local: (acc.process_index + 1) * local]
        return collate([self.examples[i] for i in mine], self.table, cfg.max_foils, cfg.max_distractors,
                       example_index=mine, targets=self.targets)

    def logit_scale(self) -> torch.Tensor:
        return self.accelerator.unwrap_model(self.tower).logit_scale


def precompute_targets(cfg: TrainConfig, model, tokenizer, examples: list[Example],
                       images: torch.Tensor) -> ExampleTargets:
    """The per-example targets the frozen base gives, computed once before any step changes it: the
    projected embedding of each original caption (preserve_embeds) and the split reading of each true
    caption (split_distill). `images` is the image-embedding table."""
    base_embed = split_target = None
    if cfg.preserve_embeds:
        from ..encoding import encode_texts

        base_embed = encode_texts(model, tokenizer, [ex.original for ex in examples]).cpu()
    if cfg.split_distill:
        split_target, has_target = split_reading_targets(model, tokenizer, [ex.positive for ex in examples],
                                                         cfg.split_distill_w)
        eligible = torch.tensor(["split_distill" in ex.eligible for ex in examples], dtype=torch.bool)
        if not torch.equal(has_target.cpu(), eligible):  # one splitter reads both; a mismatch is a bug
            raise RuntimeError("split_distill: the split reading and the eligibility rule disagree")
        split_target = split_target.cpu()
    states = states_tokens(tokenizer, examples, cfg.states_length, cfg.states_skip_pooled) if uses_states(cfg) else {}
    return ExampleTargets(images=images, distractors=bool(cfg.distractor), base_embed=base_embed,
                          split_target=split_target, **states)


def setup(cfg: TrainConfig, inputs: RunInputs, accelerator, run: RunDir, cache: ImageEmbeddingCache,
          image_loader: Callable[[str], object] | None = None, progress: bool = True) -> TrainState:
    """Load the base, build the image cache, fix the targets, then the trainable tower, AdamW (decay on
    matrices only) and the schedule, prepared by accelerate; a resumed run loads its checkpoint."""
    from accelerate.utils import set_seed
    from transformers import CLIPModel

    set_seed(cfg.seed)
    model = CLIPModel.from_pretrained(cfg.base)
    model.requires_grad_(False)
    model.eval()
    model.to(accelerator.device)
    with accelerator.main_process_first():
        if accelerator.is_main_process:
            cache.build(model, inputs.image_processor, inputs.keys, image_loader or default_image_loader(cfg.images),
                        batch_size=cfg.image_batch_size, progress=progress)
    examples = inputs.examples
    table = TokenTable(inputs.tokenizer, all_texts(examples))
    targets = precompute_targets(cfg, model, inputs.tokenizer, examples, cache.load(inputs.keys).cpu())
    affirm = affirmative_targets(model, inputs.tokenizer, inputs.seg.records) if cfg.seg_affirm else None

    text_model = model.text_model
    base_text = copy.deepcopy(text_model).requires_grad_(False).eval() \
        if cfg.preserve or uses_states(cfg) else None
    trainable = configure_trainable(text_model, model.text_projection, cfg.layers, cfg.train_embeddings,
                                    cfg.train_final_layer_norm, cfg.train_projection)
    tower = TextTower(text_model, model.text_projection, model.logit_scale, cfg.learn_logit_scale)
    tower.train()
    params = [p for p in tower.parameters() if p.requires_grad]
    if not params:
        raise InputError("nothing to train: every text parameter is frozen by the config")
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    scheduler = _scheduler(optimizer, cfg)
    tower, optimizer, scheduler = accelerator.prepare(tower, optimizer, scheduler)
    if base_text is not None:
        base_text.to(accelerator.device)
    start_step = 0
    if inputs.found is not None:
        start_step, path = inputs.found
        accelerator.load_state(str(path))
        accelerator.print(f"resumed from {path} (step {start_step})")
    return TrainState(cfg, accelerator, run, model, tower, params, trainable, optimizer, scheduler,
                      NegationObjective(cfg), examples, table, targets, base_text, start_step,
                      FrozenSegmenter(inputs.seg, inputs.tokenizer, accelerator.device,
                                      others=cfg.seg_choice > 0, affirm=affirm) if inputs.seg else None,
                      FrozenDenoiser(cfg.unet_model, cfg.images, accelerator.device) if cfg.unet_loss else None,
                      inputs.keys, empty_prompt_states(cfg, inputs.tokenizer, base_text, accelerator.device))


def uses_states(cfg: TrainConfig) -> bool:
    """Whether a term reads token states at the pipeline's padding (`states_tokens` in the batch)."""
    return bool(cfg.omit_states or cfg.preserve_states or cfg.unet_loss)


def empty_prompt_states(cfg: TrainConfig, tokenizer, base_text, device) -> torch.Tensor | None:
    """The base's states of the empty prompt (the unconditional branch a pipeline's guidance uses), at the
    pipeline's padding: the teacher holds it fixed."""
    if not cfg.unet_loss:
        return None
    enc = tokenizer([""], padding="max_length", max_length=cfg.states_length, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return base_text(input_ids=enc.input_ids.to(device),
                         attention_mask=enc.attention_mask.to(device) if cfg.states_mask else None).last_hidden_state


def unet_inputs(state: TrainState, batch: Batch, states: torch.Tensor, step: int, micro: int
                ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(prediction, target) of unet_loss on this micro-batch's negated examples (at most the process's share
    of `unet_batch_size`): the frozen UNet's prediction from the tower's states of the true caption, and the
    teacher's (or the plain denoising target). Noise and timesteps are seeded by (seed, step, micro, rank)."""
    cfg, acc, den = state.cfg, state.accelerator, state.unet
    rows = torch.nonzero(batch.states_rows).flatten()[: max(1, cfg.unet_batch_size // acc.num_processes)]
    if len(rows) == 0:
        return None
    gen = torch.Generator().manual_seed(((cfg.seed * 1_000_003 + step) * 97 + micro) * 31 + acc.process_index)
    if cfg.unet_mode == "denoise":
        keys = [state.keys[int(i)] for i in batch.image_index[rows].tolist()]
        xt, t, target = den.noisy(den.clean(keys), gen)
        return den.out(xt, t, states[rows]), target
    with torch.no_grad():
        aff = state.base_text(input_ids=batch.states_target_ids[rows], attention_mask=batch.states_target_mask[rows]
                              if cfg.states_mask else None).last_hidden_state
        neg = state.base_text(input_ids=batch.states_neg_ids[rows], attention_mask=batch.states_neg_mask[rows]
                              if cfg.states_mask else None).last_hidden_state
    if cfg.unet_on_policy:
        xt, t = den.on_policy(aff, neg, cfg.unet_guidance, cfg.unet_sample_steps, gen)
    else:
        keys = [state.keys[int(i)] for i in batch.image_index[rows].tolist()]
        xt, t, _ = den.noisy(den.clean(keys), gen)
    target = den.teacher(xt, t, aff, neg, state.empty_states.expand(len(rows), -1, -1), cfg.unet_guidance)
    return den.out(xt, t, states[rows]), target


def compute_loss(state: TrainState, batch: Batch, step: int = 0, micro: int = 0
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The objective on one micro-batch; the frozen base's hidden states (preservation) are computed here."""
    cfg = state.cfg
    states_in = seg_in = None
    if uses_states(cfg):
        ids, mask = batch.states_ids, batch.states_mask
        if cfg.preserve_states:  # the affirmative texts ride in the same forward (one forward per step)
            ids, mask = torch.cat([ids, batch.states_target_ids]), torch.cat([mask, batch.states_target_mask])
        states_in = (ids, mask if cfg.states_mask else None)
    seg_rows = None
    if state.seg is not None:
        acc = state.accelerator
        seg_rows = state.seg.sample(step, micro, cfg, acc.process_index, acc.num_processes)
        seg_in = state.seg.inputs(seg_rows)
    emb, hidden, states, seg_proj = state.tower(batch.input_ids, batch.attention_mask,
                                                *(states_in or (None, None)), *(seg_in[:2] if seg_in else (None, None)))
    kept = None  # the tower's states of the affirmative texts (preserve_states)
    if states is not None and cfg.preserve_states:
        states, kept = states[: len(batch.states_ids)], states[len(batch.states_ids):]
    base_hidden = states_target = seg = None
    with torch.no_grad():
        if cfg.preserve:
            rows = batch.original
            base_hidden = state.base_text(input_ids=batch.input_ids[rows],
                                          attention_mask=batch.attention_mask[rows]).last_hidden_state
        if cfg.omit_states or cfg.preserve_states:
            states_target = state.base_text(input_ids=batch.states_target_ids,
                                            attention_mask=batch.states_target_mask if cfg.states_mask else None
                                            ).last_hidden_state
    if seg_in is not None:
        affirm = state.seg.affirm_targets(seg_rows)
        seg = (state.seg.logits(seg_in[2], seg_proj), seg_in[3], seg_in[4],
               None if affirm is None else (seg_proj, *affirm))
    unet = unet_inputs(state, batch, states, step, micro) if state.unet is not None else None
    return state.objective(emb, hidden, batch, state.logit_scale().exp(), base_hidden=base_hidden,
                           states=None if states_target is None else (states, states_target, kept), seg=seg,
                           unet=unet)


def train_step(state: TrainState, step: int) -> dict[str, float]:
    """Optimizer step `step` (0-based): `grad_accum` micro-batches through accelerate's `accumulate`,
    each checked for a finite loss before its backward; clip, step and schedule on the synced one.
    Returns the loss and each term, averaged over the micro-batches."""
    cfg, accelerator = state.cfg, state.accelerator
    out: dict[str, float] = {}
    for micro in range(cfg.grad_accum):
        batch = state.batch(step, micro).to(accelerator.device)
        with accelerator.accumulate(state.tower):
            with accelerator.autocast():
                loss, parts = compute_loss(state, batch, step, micro)
            if not torch.isfinite(loss):
                last = state.run.latest()
                raise RunFailed(f"non-finite loss ({loss.item()}) at step {step + 1}; "
                                f"last good checkpoint: {last[1] if last else 'none'}")
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                accelerator.clip_grad_norm_(state.params, cfg.max_grad_norm)
            state.optimizer.step()
            if accelerator.sync_gradients:
                state.scheduler.step()
            state.optimizer.zero_grad(set_to_none=True)
        for k, v in {"loss": loss, **parts}.items():
            out[k] = out.get(k, 0.0) + float(v.detach()) / cfg.grad_accum
    if cfg.learn_logit_scale:
        with torch.no_grad():
            state.logit_scale().clamp_(0, LOGIT_SCALE_MAX)
    return out


class RunningMean:
    """Per-key means of the step dicts added since the last `pop` (one log entry's averages)."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.n += 1

    def pop(self) -> dict[str, float]:
        out = {k: round(v / self.n, 6) for k, v in self.sums.items()}
        self.sums, self.n = {}, 0
        return out


def train(
    cfg: TrainConfig,
    resume: bool = False,
    overwrite: bool = False,
    image_loader: Callable[[str], object] | None = None,
    progress: bool = True,
    accelerator=None,
    echo: Callable[[str], None] | None = print,
) -> TrainResult:
    """Fine-tune `cfg.base` on `cfg.data`; write checkpoints, a JSON-lines log and `<out>/model`.

    `resume` continues the newest checkpoint in `cfg.out` (refusing a config or data that differ in
    anything that changes training); `overwrite` replaces a run already in `cfg.out`. Without either,
    a folder holding a run is refused. `echo` (default `print`; None for silence) gets, on the main
    process, one line with the records each enabled term trains on, counted before any compute.
    """
    from accelerate import Accelerator

    t0 = time.perf_counter()
    run = RunDir(cfg.out)
    # step_scheduler_with_optimizer=False: accelerate would otherwise advance the schedule once per
    # process per step; `batch_size` is already the global batch, so the schedule counts optimizer steps.
    accelerator = accelerator or Accelerator(mixed_precision=cfg.mixed_precision,
                                             gradient_accumulation_steps=cfg.grad_accum,
                                             step_scheduler_with_optimizer=False,
                                             cpu=not torch.cuda.is_available())
    inputs = check_inputs(cfg, accelerator, run, resume, overwrite, image_loader)
    if echo is not None and accelerator.is_main_process:
        echo(f"eligible records (of {len(inputs.records)}): "
             + ", ".join(f"{t} {n}" for t, n in inputs.eligible.items()))
    if resume and inputs.found is None:
        accelerator.print(f"--resume: no checkpoint under {run.out / 'checkpoints'}; starting from step 0")
    cache = ImageEmbeddingCache(cfg.cache_dir or run.out / "image_cache")
    with run.lock() if accelerator.is_main_process else contextlib.nullcontext():
        if overwrite and accelerator.is_main_process:
            run.remove_run()
        accelerator.wait_for_everyone()
        state = setup(cfg, inputs, accelerator, run, cache, image_loader, progress)
        log = _loop(state, inputs, progress, t0)
        _export(state, inputs)
    return TrainResult(out=run.out, steps=cfg.steps, log=log, seconds=time.perf_counter() - t0,
                       resumed_from=inputs.found[0] if inputs.found else None, eligible=inputs.eligible,
                       records=len(inputs.records))


def _loop(state: TrainState, inputs: RunInputs, progress: bool, t0: float) -> list[dict]:
    """Steps from `state.start_step`: a log entry every `log_every`, a checkpoint every `save_every`."""
    cfg, accelerator, run = state.cfg, state.accelerator, state.run
    if accelerator.is_main_process:
        # the eligibility counts first; a resumed run never logs a step twice, a fresh one starts empty
        run.start_log(state.start_step, inputs.log_header)
        atomic_write_text(run.out / "training_config.json", cfg.to_json())
    accelerator.wait_for_everyone()
    saved = {"config": cfg.to_dict(), "data_fingerprint": inputs.fingerprint}
    log: list[dict] = []
    mean = RunningMean()
    bar = tqdm(total=cfg.steps, initial=state.start_step, desc="fine-tune",
               disable=not progress or not accelerator.is_main_process)
    for step in range(state.start_step, cfg.steps):
        mean.add(train_step(state, step))
        done = step + 1
        bar.update(1)
        if done % cfg.log_every == 0 or done == cfg.steps:
            entry = {"step": done, **mean.pop(), "lr": state.scheduler.get_last_lr()[0],
                     "logit_scale": float(state.logit_scale().exp()), "seconds": round(time.perf_counter() - t0, 2)}
            log.append(entry)
            if accelerator.is_main_process:
                run.append_log(entry)
                bar.set_postfix(loss=f"{entry['loss']:.3f}")
        if done % cfg.save_every == 0 or done == cfg.steps:
            run.save_checkpoint(accelerator, done, cfg.keep_checkpoints, saved)
    bar.close()
    return log


def _export(state: TrainState, inputs: RunInputs) -> None:
    """Copy the trained logit scale into the CLIPModel and export it (main process) to `<out>/model`."""
    from ..checkpoint.export import export_checkpoint

    cfg, accelerator = state.cfg, state.accelerator
    accelerator.wait_for_everyone()
    state.model.logit_scale.data.copy_(state.logit_scale().data)
    state.model.to("cpu")
    if accelerator.is_main_process:
        export_checkpoint(state.model, inputs.tokenizer, inputs.image_processor, state.run.out / "model",
                          training_config={**cfg.to_dict(), "base_model": describe_base(cfg.base),
                                           "objectives": objective_weights(cfg)},
                          trainable=state.trainable)
    accelerator.wait_for_everyone()


@torch.no_grad()
def split_reading_targets(model, tokenizer, texts: list[str], weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """((N, D) normalised targets, (N,) mask) for the split-distillation term: for each caption that
    negates something, normalize(e(affirmative) - weight * mean_c e("a photo of a {c}")) under the
    current (base) model, read through the split scorer's own `encode_split`. (The scorer takes the max
    over concepts per image; a single target direction needs one vector, hence the mean.)"""
    from ..encoding import encode_texts
    from ..split_scorer import encode_split

    was_training = model.training
    model.eval()
    split = encode_split(texts, lambda t: encode_texts(model, tokenizer, t))
    model.train(was_training)
    mask = split.concept_mask.float()
    concepts = (split.concepts * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
    targets = F.normalize(split.affirmative - weight * concepts, dim=-1)
    return targets * split.has_negation[:, None], split.has_negation.clone()


def objective_weights(cfg: TrainConfig) -> dict:
    """The enabled loss terms and their weights, as the model card lists them."""
    out: dict = {t: getattr(cfg, t) for t in TERMS if getattr(cfg, t)}
    if cfg.hard_negatives:
        out["hard_negatives"] = True
    return out


def latest_checkpoint(out: str | os.PathLike) -> tuple[int, Path] | None:
    return RunDir(out).latest()
