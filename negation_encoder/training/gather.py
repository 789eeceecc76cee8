"""Cross-process gathering for the contrastive terms (the only distributed code we write).

accelerate (DDP) averages gradients; the contrastive losses additionally need every process's
texts and images as columns. Rows stay local and columns are gathered with autograd-aware
all_gather, so after DDP's averaging the gradient equals the single-process one for the same
global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every process along dim 0 (identity on one process)."""
    if world_size() == 1:
        return x
    if x.requires_grad:
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(x), dim=0)
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)
