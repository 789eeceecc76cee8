"""Everything a run needs before its first step (`setup` -> `TrainState`): the frozen base, the image
cache, each term's fixed targets, the trainable tower, AdamW (decay on matrices only) and the schedule,
prepared by accelerate; a resumed run loads its checkpoint."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..image_cache import ImageEmbeddingCache
from .batching import Batch, Example, TokenTable, batch_indices, collate, example_texts
from .checkpoints import RunDir
from .checks import RunInputs, default_image_loader
from .config import TrainConfig
from .freezing import configure_trainable
from .frozen_cache import FrozenCache
from .objective import NegationObjective
from .terms import SetupContext
from .tower import TextTower


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
    images: torch.Tensor  # (K, D) the image-embedding table (rows: `keys`)
    base_text: nn.Module | None  # the frozen base text tower, for terms that read it every step
    start_step: int = 0
    cache: FrozenCache | None = None  # the budget for frozen outputs the terms keep (None: none kept)
    pad_id: int = 0  # the tokenizer's padding id (rows re-padded by length)

    def batch(self, step: int, micro: int) -> Batch:
        """This process's slice of micro-batch `micro` of optimizer step `step`, with every term's rows."""
        cfg, acc = self.cfg, self.accelerator
        idx = batch_indices(step, micro, len(self.examples), cfg.optim.batch_size, cfg.optim.grad_accum,
                            cfg.optim.seed)
        local = cfg.optim.batch_size // acc.num_processes
        mine = idx[acc.process_index * local: (acc.process_index + 1) * local]
        return collate([self.examples[i] for i in mine], self.table, self.images, cfg.data.max_foils, mine,
                       list(self.objective.terms.values()))

    def logit_scale(self) -> torch.Tensor:
        return self.accelerator.unwrap_model(self.tower).logit_scale


def _scheduler(optimizer, cfg: TrainConfig):
    """Linear warmup, then cosine to lr * min_lr_ratio: transformers' schedule, counting optimizer steps."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    return get_cosine_with_min_lr_schedule_with_warmup(optimizer, num_warmup_steps=cfg.optim.warmup_steps,
                                                       num_training_steps=cfg.optim.steps,
                                                       min_lr_rate=cfg.optim.min_lr_ratio)


def setup(cfg: TrainConfig, inputs: RunInputs, accelerator, run: RunDir, cache: ImageEmbeddingCache,
          image_loader: Callable[[str], object] | None = None, progress: bool = True) -> TrainState:
    """Load the base, build the image cache, let every term fix its targets, then the trainable tower,
    AdamW and the schedule, prepared by accelerate; a resumed run loads its checkpoint."""
    from accelerate.utils import set_seed
    from transformers import CLIPModel

    set_seed(cfg.optim.seed)
    model = CLIPModel.from_pretrained(cfg.model.base)
    model.requires_grad_(False)
    model.eval()
    model.to(accelerator.device)
    with accelerator.main_process_first():
        if accelerator.is_main_process:
            cache.build(model, inputs.image_processor, inputs.keys,
                        image_loader or default_image_loader(cfg.data.images),
                        batch_size=cfg.data.image_batch_size, progress=progress)
    examples = inputs.examples
    table = TokenTable(inputs.tokenizer, example_texts(examples))
    images = cache.load(inputs.keys).cpu()
    text_model = model.text_model
    base_text = copy.deepcopy(text_model).requires_grad_(False).eval() \
        if any(t.needs_base_tower for t in inputs.terms) else None
    if base_text is not None and cfg.optim.frozen_dtype != "float32":
        base_text = base_text.to(getattr(torch, cfg.optim.frozen_dtype))  # its reads are cast to float32
    cache = FrozenCache(cfg.data.frozen_cache_mb) if cfg.data.frozen_cache_mb > 0 else None
    ctx = SetupContext(cfg, model, base_text, inputs.tokenizer, examples, images, inputs.keys, accelerator.device,
                       cache)
    for term in inputs.terms:
        term.prepare(ctx)

    trainable = configure_trainable(text_model, model.text_projection, cfg.model.layers, cfg.model.train_embeddings,
                                    cfg.model.train_final_layer_norm, cfg.model.train_projection)
    tower = TextTower(text_model, model.text_projection, model.logit_scale, cfg.model.learn_logit_scale)
    tower.train()
    params = [p for p in tower.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("nothing to train: every text parameter is frozen by the config")
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.optim.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.optim.lr)
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
                      NegationObjective(inputs.terms), examples, table, images, base_text, start_step, cache,
                      inputs.tokenizer.pad_token_id)
