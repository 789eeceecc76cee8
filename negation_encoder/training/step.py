"""One optimizer step: every term's plan, one tower forward over all views, the frozen base's blocks, the
objective, the backward (`train_step`).

Why the encoding is arranged as it is (`encode`): on a text tower the cost is tokens and attention, so rows
are not padded further than their readers need. Rows whose readers take only the pooled output or masked
states (the batch's own texts, and requests with `padding=False`) are pooled, sorted by length and cut into
a few length buckets (`length_buckets`); rows whose padding a downstream model reads (`padding=True`: the
pipeline-padded states) keep their view's width. All of them go through the trainable tower in one forward
call. `encode_reference` is the plain route (one padded batch per view), kept as the reference the fast
route is tested and benchmarked against. (What frozen models give is kept by the terms themselves, computed
once before the first step: `frozen_cache`.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..conditioning import Reading, read_text
from ..errors import RunFailed
from .batching import Batch
from .setup import TrainState
from .terms import Encoded, Plan, Request, StepInfo, StepOutputs

LOGIT_SCALE_MAX = math.log(100.0)
BUCKET_OVERHEAD_TOKENS = 512  # what one more forward call costs, in padded tokens (measured on CPU)
MAX_BUCKETS = 4


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


def _stack(blocks: list[Request]) -> tuple[torch.Tensor, torch.Tensor | None, int, bool]:
    """One view's blocks as one padded batch, with the layer its blocks read (blocks of a view share their
    padding and their reading)."""
    masks = [b.attention_mask for b in blocks]
    if any(m is None for m in masks) and not all(m is None for m in masks):
        raise ValueError(f"view {blocks[0].view!r}: some blocks read an attention mask and some do not")
    if any(b.reading != blocks[0].reading for b in blocks):
        raise ValueError(f"view {blocks[0].view!r}: its blocks read different layers")
    layer, norm = blocks[0].reading
    if len(blocks) == 1:
        return blocks[0].input_ids, masks[0], layer, norm
    return torch.cat([b.input_ids for b in blocks]), None if masks[0] is None else torch.cat(masks), layer, norm


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


# ---- the reference route: one padded batch per view, the base recomputed every step

@torch.no_grad()
def _base_states(base_text, ids: torch.Tensor, mask: torch.Tensor | None, layer: int, norm: bool) -> torch.Tensor:
    how = Reading(states_layer=layer, final_norm=norm, attention_mask=mask is not None, length=ids.shape[1])
    return read_text(base_text, None, ids, mask, how)[0].float()  # float32 whatever optim.frozen_dtype is


def _encode_base(base_text, blocks: list[Request]) -> Encoded:
    # terms read the base's hidden states per step; its embeddings are fixed once, in their prepare
    return Encoded(_base_states(base_text, *_stack(blocks)), None, None)


def encode_reference(state: TrainState, batch: Batch, plans: dict[str, Plan]) -> StepOutputs:
    trained = group_requests(plans, base=False)
    views = [(batch.input_ids, batch.attention_mask, -1, True), *(_stack(blocks) for blocks in trained.values())]
    texts, *encoded = state.tower(views)
    blocks: dict[tuple[str, str, bool], Encoded] = {}
    for enc, view_blocks in zip(encoded, trained.values(), strict=True):
        blocks.update(_split(enc, view_blocks))
    for view_blocks in group_requests(plans, base=True).values():
        blocks.update(_split(_encode_base(state.base_text, view_blocks), view_blocks))
    return StepOutputs(texts, blocks, state.logit_scale().exp())


# ---- the fast route

def length_buckets(lengths: list[int], max_buckets: int = MAX_BUCKETS,
                   overhead: int = BUCKET_OVERHEAD_TOKENS) -> list[int]:
    """Upper lengths of the buckets that minimise padded tokens + `overhead` per bucket, for rows of these
    lengths (each row goes to the first bucket at least its length). A dynamic program over the distinct
    lengths: at most 77 of them, so it costs nothing beside a forward."""
    distinct = sorted(set(lengths))
    count = [sum(1 for x in lengths if x <= w) for w in distinct]  # rows up to each distinct length
    n = len(distinct)
    inf = float("inf")
    # best[k][j]: cost of covering rows up to distinct[j] with k buckets, the last ending at distinct[j]
    best = [[inf] * n for _ in range(max_buckets + 1)]
    back = [[-1] * n for _ in range(max_buckets + 1)]
    for j in range(n):
        best[1][j] = count[j] * distinct[j] + overhead
    for k in range(2, max_buckets + 1):
        for j in range(n):
            for i in range(j):
                c = best[k - 1][i] + (count[j] - count[i]) * distinct[j] + overhead
                if c < best[k][j]:
                    best[k][j], back[k][j] = c, i
    k = min(range(1, max_buckets + 1), key=lambda b: best[b][n - 1])
    out, j = [], n - 1
    while j >= 0 and k >= 1:
        out.append(distinct[j])
        j, k = back[k][j], k - 1
    return sorted(out)


@dataclass
class _Pool:
    """Rows whose readers need no padding: their ids trimmed to their length, and where each came from."""

    rows: list[torch.Tensor]
    lengths: list[int]

    def chunks(self) -> list[tuple[list[int], int]]:
        """(row indices, width) of each length bucket, rows in their original order within a bucket."""
        edges = length_buckets(self.lengths)
        members: dict[int, list[int]] = {w: [] for w in edges}
        for i, n in enumerate(self.lengths):
            members[next(w for w in edges if n <= w)].append(i)
        return [(idx, w) for w, idx in members.items() if idx]


def _trim(ids: torch.Tensor, mask: torch.Tensor) -> tuple[list[torch.Tensor], list[int]]:
    lengths = mask.sum(-1).tolist()
    return [ids[i, :n] for i, n in enumerate(lengths)], lengths


def _pad_rows(rows: list[torch.Tensor], width: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), width), pad_id, dtype=rows[0].dtype, device=rows[0].device)
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=rows[0].device)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask


def _gather(parts: list[Encoded], chunks: list[tuple[list[int], int]], total: int, width: int) -> Encoded:
    """The pooled rows' encodings back in pool order, hidden states zero-padded to `width` (positions past a
    row's length are never read: its mask excludes them)."""
    order = torch.tensor([i for idx, _ in chunks for i in idx], device=parts[0].hidden.device)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(total, device=order.device)
    hidden = torch.cat([F.pad(p.hidden, (0, 0, 0, width - p.hidden.shape[1])) for p in parts])[inverse]
    projected = torch.cat([p.projected for p in parts])[inverse]
    return Encoded(hidden, projected, torch.cat([p.embeds for p in parts])[inverse])


def encode(state: TrainState, batch: Batch, plans: dict[str, Plan]) -> StepOutputs:
    """The step's encodings by the fast route (module docstring); `encode_reference` computes the same."""
    trained = group_requests(plans, base=False)
    def poolable(b: Request) -> bool:  # read without padding, under a mask, at last_hidden_state
        return not b.padding and b.attention_mask is not None and b.reading == (-1, True)

    pooled = {k: [b for b in blocks if poolable(b)] for k, blocks in trained.items()}
    padded = {k: [b for b in blocks if not poolable(b)] for k, blocks in trained.items()}
    # the pool: the batch's texts first, then each unpadded block's rows
    rows, lengths = _trim(batch.input_ids, batch.attention_mask)
    spans: list[tuple[Request | None, int, int]] = [(None, 0, len(rows))]
    for blocks in pooled.values():
        for b in blocks:
            r, n = _trim(b.input_ids, b.attention_mask)
            spans.append((b, len(rows), len(rows) + len(r)))
            rows += r
            lengths += n
    pool = _Pool(rows, lengths)
    chunks = pool.chunks()
    views = [(*_pad_rows([rows[i] for i in idx], w, state.pad_id), -1, True) for idx, w in chunks]
    padded_views = [blocks for blocks in padded.values() if blocks]
    views += [_stack(blocks) for blocks in padded_views]
    encoded = state.tower(views)
    width = max([batch.input_ids.shape[1], *(b.input_ids.shape[1] for b, _, _ in spans[1:])])
    pooled_out = _gather(encoded[: len(chunks)], chunks, len(rows), width)
    texts = Encoded(pooled_out.hidden[: spans[0][2], : batch.input_ids.shape[1]], pooled_out.projected[: spans[0][2]],
                    pooled_out.embeds[: spans[0][2]])
    blocks: dict[tuple[str, str, bool], Encoded] = {}
    for b, start, end in spans[1:]:
        blocks[b.key] = Encoded(pooled_out.hidden[start:end, : b.input_ids.shape[1]], pooled_out.projected[start:end],
                                pooled_out.embeds[start:end])
    for enc, view_blocks in zip(encoded[len(chunks):], padded_views, strict=True):
        blocks.update(_split(enc, view_blocks))
    for view_blocks in group_requests(plans, base=True).values():
        blocks.update(_split(_encode_base(state.base_text, view_blocks), view_blocks))
    return StepOutputs(texts, blocks, state.logit_scale().exp())


def compute_loss(state: TrainState, batch: Batch, step: int = 0, micro: int = 0, reference: bool = False
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The objective on one micro-batch: its plans, the encodings (`encode`, or `encode_reference`), the
    terms."""
    cfg, acc = state.cfg, state.accelerator
    info = StepInfo(step, micro, acc.process_index, acc.num_processes, cfg.optim.seed, cfg.optim.grad_accum)
    plans = state.objective.plan(batch, info)
    out = encode_reference(state, batch, plans) if reference else encode(state, batch, plans)
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
