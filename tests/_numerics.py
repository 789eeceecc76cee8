"""Comparing float results that two routes compute with different batch shapes or thread counts.

Element-wise tolerances fail on such pairs for the wrong reason: an element that is zero in exact arithmetic
(the gradient of an attention key bias, which softmax cancels) comes out as rounding noise of either sign, and
a large element differs in its seventh digit. The difference measured against the size of the whole tensor
is what says whether two routes computed the same thing.
"""

from __future__ import annotations

import torch


def assert_close_in_norm(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5,
                         floor: float = 1e-6, what: str = "") -> None:
    """||actual - expected|| <= rel * ||expected|| + floor, shapes equal."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual.double() - expected.double()).norm().item()
    size = expected.double().norm().item()
    assert diff <= rel * size + floor, f"{what}: ||difference|| {diff:.3g} against ||expected|| {size:.3g}"
