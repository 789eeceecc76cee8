"""The fine-tuning loop on accelerate: text tower only, image embeddings from the cache.

One process:   negenc train --config cfg.yaml
Many GPUs:     accelerate launch -m negation_encoder.cli train --config cfg.yaml
Many nodes:    accelerate launch --num_machines N --machine_rank R --main_process_ip IP ... (same)
CPU, 2 procs:  torchrun --nproc_per_node 2 -m negation_encoder.cli train --config cfg.yaml

`batch_size` is the global batch: each process takes its slice, and the contrastive terms see every
process's texts (gathered with gradients), so N processes train the same weights as one process.
Checkpoints (`<out>/checkpoints/step_N`) are written to a temporary folder and renamed, and
`resume=True` continues from the newest one with the same data order, optimizer, scheduler and RNG.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data.records import NegationRecord, RecordError, read_records
from ..errors import InputError, RunFailed
from .batching import Batch, TokenTable, all_texts, batch_indices, collate, example_from_record
from .config import TrainConfig
from .distributed import gather, world_size
from .embed_cache import ImageEmbeddingCache
from .freezing import configure_trainable
from .losses import (
    ClipInfoNCE,
    HardNegativeInfoNCE,
    MultipleChoiceLoss,
    OmniAbsenceLoss,
    OmniPresenceLoss,
    PreservationLoss,
)

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

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask)
        emb = F.normalize(self.text_projection(out.pooler_output), dim=-1)
        return emb, out.last_hidden_state


@dataclass
class TrainResult:
    out: Path
    steps: int
    log: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int | None = None


def load_training_records(paths: list[str]) -> list[NegationRecord]:
    records: list[NegationRecord] = []
    seen: set[str] = set()
    for p in paths:
        try:
            recs = read_records(p)
        except RecordError as e:
            raise InputError(str(e)) from None
        for r in recs:
            if r.id in seen:
                raise InputError(f"{p}: record id {r.id!r} also appears in an earlier data file")
            seen.add(r.id)
        records += recs
    if not records:
        raise InputError(f"no training records in {', '.join(paths) or '(no --data given)'}")
    return records


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


def _checkpoints(out: Path) -> list[tuple[int, Path]]:
    root = out / "checkpoints"
    if not root.exists():
        return []
    found = []
    for d in root.iterdir():
        if d.is_dir() and d.name.startswith("step_") and d.name[5:].isdigit() and (d / "trainer_state.json").exists():
            found.append((int(d.name[5:]), d))
    return sorted(found)


def latest_checkpoint(out: str | os.PathLike) -> tuple[int, Path] | None:
    found = _checkpoints(Path(out))
    return found[-1] if found else None


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    def fn(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine

    return fn


class NegationObjective(nn.Module):
    """The weighted sum of the configured losses for one batch (local rows, gathered columns)."""

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.cfg = cfg
        self.infonce = HardNegativeInfoNCE() if cfg.hard_negatives else ClipInfoNCE()
        self.mcq = MultipleChoiceLoss()
        self.presence = OmniPresenceLoss(cfg.omni_temperature)
        self.absence = OmniAbsenceLoss(cfg.omni_temperature, cfg.omni_margin)
        self.preserve = PreservationLoss()

    def forward(self, tower: nn.Module, batch: Batch, image_emb: torch.Tensor, base_text: nn.Module | None):
        cfg = self.cfg
        emb, hidden = tower(batch.input_ids, batch.attention_mask)
        logit_scale = _unwrap(tower).logit_scale.exp()
        ids = batch.image_index
        pos = emb[batch.positive]
        parts: dict[str, torch.Tensor] = {}
        foil_rows = batch.foils.clamp_min(0)
        foils = emb[foil_rows] * (batch.foils >= 0)[..., None]
        foil_mask = batch.foils >= 0
        if cfg.infonce:
            text_ids = torch.where(batch.in_pool, ids, torch.full_like(ids, -1))
            all_img, all_ids, all_pos, all_text_ids = gather(image_emb), gather(ids), gather(pos), gather(text_ids)
            if cfg.hard_negatives:
                parts["infonce"] = self.infonce(image_emb, pos, logit_scale, ids, text_ids, foils, foil_mask,
                                                all_img, all_pos, all_ids, all_text_ids, gather(foils), gather(foil_mask))
            else:
                parts["infonce"] = self.infonce(image_emb, pos, logit_scale, ids, text_ids, all_img, all_pos, all_ids,
                                                all_text_ids)
        if cfg.mcq:
            mask = batch.mcq_choices >= 0
            choices = emb[batch.mcq_choices.clamp_min(0)] * mask[..., None]
            parts["mcq"] = self.mcq(image_emb[batch.mcq_example], choices, mask, logit_scale)
        if cfg.omni_presence or cfg.omni_absence:
            orig = emb[batch.original]
            all_orig, all_ids = gather(orig), gather(ids)
            if cfg.omni_presence:
                has = batch.presence_negated >= 0
                neg = emb[batch.presence_negated.clamp_min(0)]
                parts["omni_presence"] = self.presence(image_emb, orig, neg, has, ids, all_orig, all_ids)
            if cfg.omni_absence:
                has = batch.absence_negated >= 0
                neg = emb[batch.absence_negated.clamp_min(0)]
                parts["omni_absence"] = self.absence(image_emb, orig, neg, has, ids, all_orig, gather(neg),
                                                     all_ids, gather(has))
        if cfg.preserve and base_text is not None:
            rows = batch.original
            with torch.no_grad():
                base_hidden = base_text(input_ids=batch.input_ids[rows],
                                        attention_mask=batch.attention_mask[rows]).last_hidden_state
            parts["preserve"] = self.preserve(hidden[rows], base_hidden, batch.attention_mask[rows])
        weights = {"infonce": cfg.infonce, "mcq": cfg.mcq, "omni_presence": cfg.omni_presence,
                   "omni_absence": cfg.omni_absence, "preserve": cfg.preserve}
        counts = {
            "infonce": batch.in_pool.sum(),
            "mcq": (batch.mcq_choices[:, 1:] >= 0).any(dim=1).sum(),
            "omni_presence": (batch.presence_negated >= 0).sum(),
            "omni_absence": (batch.absence_negated >= 0).sum(),
            "preserve": batch.attention_mask[batch.original].sum(),
        }
        total = sum(weights[k] * _global_mean_scale(v, counts[k]) for k, v in parts.items())
        return total, parts


def _global_mean_scale(local_mean: torch.Tensor, local_count: torch.Tensor) -> torch.Tensor:
    """Rescale a mean over this process's rows so that, after DDP averages gradients, the result is the
    mean over all processes' rows, also when processes hold different numbers of rows for a term."""
    world = world_size()
    if world == 1:
        return local_mean
    total = gather(local_count.reshape(1).to(local_mean.device, torch.float32)).sum().clamp_min(1)
    return local_mean * local_count.to(torch.float32) * world / total


def _unwrap(module: nn.Module) -> nn.Module:
    return getattr(module, "module", module)


def train(
    cfg: TrainConfig,
    resume: bool = False,
    eval_fn: Callable[[nn.Module], dict] | None = None,  # called with the CLIPModel being trained
    image_loader: Callable[[str], object] | None = None,
    progress: bool = True,
    accelerator=None,
) -> TrainResult:
    """Fine-tune `cfg.base` on `cfg.data`; write checkpoints, a JSON-lines log and `<out>/model`."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoImageProcessor, CLIPModel, CLIPTokenizer

    from .export import export_checkpoint

    t0 = time.perf_counter()
    out = Path(cfg.out)
    # step_scheduler_with_optimizer=False: accelerate would otherwise advance the schedule once per
    # process per step; `batch_size` is already the global batch, so the schedule counts optimizer steps.
    accelerator = accelerator or Accelerator(mixed_precision=cfg.mixed_precision,
                                             gradient_accumulation_steps=cfg.grad_accum,
                                             step_scheduler_with_optimizer=False,
                                             cpu=not torch.cuda.is_available())
    if cfg.batch_size % accelerator.num_processes:
        raise InputError(f"batch_size={cfg.batch_size} must be divisible by the {accelerator.num_processes} processes")
    set_seed(cfg.seed)
    if not cfg.base:
        raise InputError("no base model: pass --base (a CLIPModel folder or Hub id) or set `base` in the config")
    try:
        model = CLIPModel.from_pretrained(cfg.base)
        tokenizer = CLIPTokenizer.from_pretrained(cfg.base, subfolder="tokenizer") if (Path(cfg.base) / "tokenizer").is_dir() \
            else CLIPTokenizer.from_pretrained(cfg.base)
        image_processor = AutoImageProcessor.from_pretrained(cfg.base)
    except OSError as e:
        raise InputError(f"cannot load base model {cfg.base!r}: {str(e).splitlines()[0]}") from None
    model.requires_grad_(False)
    model.eval()

    records = load_training_records(cfg.data)
    keys = list(dict.fromkeys(r.image for r in records))
    key_index = {k: i for i, k in enumerate(keys)}
    cache = ImageEmbeddingCache(cfg.cache_dir or out / "image_cache")
    model.to(accelerator.device)
    with accelerator.main_process_first():
        if accelerator.is_main_process:
            cache.build(model, image_processor, keys, image_loader or default_image_loader(cfg.images),
                        batch_size=cfg.image_batch_size, progress=progress)
    image_table = cache.load(keys).to(accelerator.device)

    examples = [example_from_record(r, key_index[r.image]) for r in records]
    table = TokenTable(tokenizer, all_texts(examples))

    text_model = model.text_model
    base_text = copy.deepcopy(text_model).requires_grad_(False).eval() if cfg.preserve else None
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
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    objective = NegationObjective(cfg)
    tower, optimizer, scheduler = accelerator.prepare(tower, optimizer, scheduler)
    if base_text is not None:
        base_text.to(accelerator.device)

    start_step, resumed_from = 0, None
    if resume:
        found = latest_checkpoint(out)
        if found is not None:
            start_step, path = found
            accelerator.load_state(str(path))
            resumed_from = start_step
            accelerator.print(f"resumed from {path} (step {start_step})")
        else:
            accelerator.print(f"--resume: no checkpoint under {out / 'checkpoints'}; starting from step 0")
    elif latest_checkpoint(out) is not None and accelerator.is_main_process:
        shutil.rmtree(out / "checkpoints")  # a fresh run never mixes with an older run's checkpoints
    accelerator.wait_for_everyone()

    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "training_config.json")
    log_path = out / "train_log.jsonl"
    log: list[dict] = []
    rank, world = accelerator.process_index, accelerator.num_processes
    local = cfg.batch_size // world
    bar = tqdm(total=cfg.steps, initial=start_step, desc="fine-tune", disable=not progress or not accelerator.is_main_process)
    running: dict[str, float] = {}
    running_steps = 0
    for step in range(start_step, cfg.steps):
        for micro in range(cfg.grad_accum):
            idx = batch_indices(step, micro, len(examples), cfg.batch_size, cfg.grad_accum, cfg.seed)
            mine = idx[rank * local: (rank + 1) * local]
            batch = collate([examples[i] for i in mine], table, cfg.max_foils, cfg.infonce_on_bare)
            batch = Batch(*[t.to(accelerator.device) for t in vars(batch).values()])
            with accelerator.accumulate(tower):
                with accelerator.autocast():
                    loss, parts = objective(tower, batch, image_table[batch.image_index], base_text)
                if not torch.isfinite(loss):
                    last = latest_checkpoint(out)
                    raise RunFailed(f"non-finite loss ({loss.item()}) at step {step}; "
                                    f"last good checkpoint: {last[1] if last else 'none'}")
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            for k, v in {"loss": loss, **parts}.items():
                running[k] = running.get(k, 0.0) + float(v.detach()) / cfg.grad_accum
        if cfg.learn_logit_scale:
            with torch.no_grad():
                _unwrap(tower).logit_scale.clamp_(0, LOGIT_SCALE_MAX)
        done = step + 1
        running_steps += 1
        bar.update(1)
        if done % cfg.log_every == 0 or done == cfg.steps:
            entry = {"step": done, **{k: round(v / running_steps, 6) for k, v in running.items()},
                     "lr": scheduler.get_last_lr()[0], "logit_scale": float(_unwrap(tower).logit_scale.exp()),
                     "seconds": round(time.perf_counter() - t0, 2)}
            running, running_steps = {}, 0
            if cfg.eval_every and done % cfg.eval_every == 0 and eval_fn is not None and accelerator.is_main_process:
                entry["eval"] = eval_fn(model)
            log.append(entry)
            if accelerator.is_main_process:
                with log_path.open("a") as fh:
                    fh.write(json.dumps(entry) + "\n")
                bar.set_postfix(loss=f"{entry['loss']:.3f}")
        if done % cfg.save_every == 0 or done == cfg.steps:
            _save_checkpoint(accelerator, out, done, cfg.keep_checkpoints)
    bar.close()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = _unwrap(accelerator.unwrap_model(tower))
        model.logit_scale.data.copy_(unwrapped.logit_scale.data)
        model.to("cpu")
        eval_results = eval_fn(model) if eval_fn is not None else None
        export_checkpoint(model, tokenizer, image_processor, out / "model", training_config=cfg.to_dict(),
                          eval_results=eval_results, trainable=trainable)
    accelerator.wait_for_everyone()
    return TrainResult(out=out, steps=cfg.steps, log=log, seconds=time.perf_counter() - t0, resumed_from=resumed_from)


def _save_checkpoint(accelerator, out: Path, step: int, keep: int) -> None:
    """save_state into `step_N.tmp`, then rename: a crash never leaves a half-written step_N."""
    root = out / "checkpoints"
    final = root / f"step_{step}"
    tmp = root / f"step_{step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for _, old in _checkpoints(out)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
