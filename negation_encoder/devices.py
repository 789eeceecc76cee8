"""Device and dtype selection, one rule for every command: CUDA when available, half precision only there.

Why fp32 on CPU: fp16 matmuls are slow or unsupported on most CPUs, and bf16 changes results for no
speed gain at these sizes. On CUDA "auto" means fp16 (bf16 when asked), as diffusers' and transformers'
examples run inference. A request the machine cannot honour is one line naming the flag.
"""

from __future__ import annotations

import torch

from .errors import InputError

DTYPES = ("auto", "fp32", "fp16", "bf16")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(spec: str | None = "auto", flag: str = "--device") -> torch.device:
    """'auto' / None -> CUDA if available else CPU; 'cpu', 'cuda', 'cuda:1' as given, checked."""
    if spec in (None, "", "auto"):
        return default_device()
    try:
        device = torch.device(spec)
    except RuntimeError as e:
        raise InputError(f"{flag}: expected auto, cpu, cuda or cuda:N, got {spec!r} ({e})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{flag}: {spec} requested but CUDA is not available")
    return device


def resolve_dtype(device: torch.device, spec: str = "auto", flag: str = "--dtype") -> torch.dtype:
    """The inference dtype: fp32 on CPU (a half-precision request there is refused), fp16 on CUDA for
    'auto', else as asked."""
    if spec not in DTYPES:
        raise InputError(f"{flag}: expected one of {', '.join(DTYPES)}, got {spec!r}")
    if device.type != "cuda":
        if spec in ("fp16", "bf16"):
            raise InputError(f"{flag}: {spec} needs a CUDA device; CPU runs in fp32")
        return torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16}.get(spec, torch.float16)


def inference_dtype(device: torch.device, requested: str = "auto") -> torch.dtype:
    """Like `resolve_dtype`, but a half-precision request on CPU quietly runs in fp32 (library paths
    that share a cache between CPU and GPU runs use this)."""
    if requested == "fp32" or device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if requested == "bf16" else torch.float16


def resolve(device: str | None = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    dev = resolve_device(device)
    return dev, resolve_dtype(dev, dtype)
