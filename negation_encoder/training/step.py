"""One optimizer step: every term's plan, one tower forward over all views, the frozen base's blocks, the
objective, the backward (`train_step`)."""

from __future__ import annotations

import math

import torch

from ..errors import RunFailed
from .batching import Batch
from .setup import TrainState
from .terms import Encoded, Plan, Request, StepInfo, StepOutputs

LOGIT_SCALE_MAX = math.log(100.0)
TEXTS = "texts"  # the batch's own distinct texts: always the first view of the tower's forward


def group_requests(plans: dict[str, Plan], base: bool) -> dict[str, list[Request]]:
    """The distinct requested blocks (of the trained tower, or of the frozen base), grouped by view in
    the order they were first asked for."""
    views: dict[str, list[Request]] = {}
    seen: set[tuple[str, str, bool]] = set()
    for plan in plans.values():
        for r in plan.requests:
            if r.base != base or r.key in seen:
                continue
            seen.add(r.key)
            views.setdefault(r.view, []).append(r)
    return views


def _stack(blocks: list[Request]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One view's blocks as one padded batch (blocks of a view share their padding)."""
    masks = [b.attention_mask for b in blocks]
    if any(m is None for m in masks) and not all(m is None for m in masks):
        raise ValueError(f"view {blocks[0].view!r}: some blocks read an attention mask and some do not")
    if len(blocks) == 1:
        return blocks[0].input_ids, masks[0]
    return torch.cat([b.input_ids for b in blocks]), None if masks[0] is None else torch.cat(masks)


def _split(encoded: Encoded, blocks: list[Request]) -> dict[tuple[str, str, bool], Encoded]:
    """A view's encoding cut back into its blocks."""
    if len(blocks) == 1:
        return {blocks[0].key: encoded}
    out, start = {}, 0
    for b in blocks:
        end = start + len(b.input_ids)
        out[b.key] = Encoded(*(None if x is None else x[start:end]
                               for x in (encoded.hidden, encoded.projected, encoded.embeds)))
        start = end
    return out


@torch.no_grad()
def _encode_base(base_text, blocks: list[Request]) -> Encoded:
    ids, mask = _stack(blocks)
    hidden = base_text(input_ids=ids, attention_mask=mask).last_hidden_state
    return Encoded(hidden, None, None)  # terms read the base's hidden states per step; its embeddings are fixed


def compute_loss(state: TrainState, batch: Batch, step: int = 0, micro: int = 0
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The objective on one micro-batch: its plans, one tower forward over every view (the batch's texts
    first; one forward per step keeps DDP's gradient bookkeeping simple), the base's blocks, the terms."""
    cfg, acc = state.cfg, state.accelerator
    info = StepInfo(step, micro, acc.process_index, acc.num_processes, cfg.optim.seed, cfg.optim.grad_accum)
    plans = state.objective.plan(batch, info)
    trained = group_requests(plans, base=False)
    views = [(batch.input_ids, batch.attention_mask), *(_stack(blocks) for blocks in trained.values())]
    texts, *encoded = state.tower(views)
    blocks: dict[tuple[str, str, bool], Encoded] = {}
    for enc, view_blocks in zip(encoded, trained.values(), strict=True):
        blocks.update(_split(enc, view_blocks))
    for view_blocks in group_requests(plans, base=True).values():
        blocks.update(_split(_encode_base(state.base_text, view_blocks), view_blocks))
    out = StepOutputs(texts, blocks, state.logit_scale().exp())
    return state.objective(out, batch, plans)


def train_step(state: TrainState, step: int) -> dict[str, float]:
    """Optimizer step `step` (0-based): `grad_accum` micro-batches through accelerate's `accumulate`,
    each checked for a finite loss before its backward; clip, step and schedule on the synced one.
    Returns the loss and each term, averaged over the micro-batches."""
    cfg, accelerator = state.cfg, state.accelerator
    accum = cfg.optim.grad_accum
    out: dict[str, float] = {}
    for micro in range(accum):
        batch = state.batch(step, micro).to(accelerator.device)
        with accelerator.accumulate(state.tower):
            with accelerator.autocast():
                loss, parts = compute_loss(state, batch, step, micro)
            if not torch.isfinite(loss):
                last = state.run.latest()
                raise RunFailed(f"non-finite loss ({loss.item()}) at step {step + 1}; "
                                f"last good checkpoint: {last[1] if last else 'none'}")
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.optim.max_grad_norm > 0:
                accelerator.clip_grad_norm_(state.params, cfg.optim.max_grad_norm)
            state.optimizer.step()
            if accelerator.sync_gradients:
                state.scheduler.step()
            state.optimizer.zero_grad(set_to_none=True)
        for k, v in {"loss": loss, **parts}.items():
            out[k] = out.get(k, 0.0) + float(v.detach()) / accum
    if cfg.model.learn_logit_scale:
        with torch.no_grad():
            state.logit_scale().clamp_(0, LOGIT_SCALE_MAX)
    return out
