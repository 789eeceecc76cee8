"""The rows of a pipeline-padded reading that several terms share: every example's text padded to the
downstream pipeline's length (`pipeline.length`), read with or without the attention mask
(`pipeline.attention_mask`) as that pipeline reads it. A block requested by several terms is encoded once."""

from __future__ import annotations

from typing import Any

import torch

from .base import Request, SetupContext

VIEW = "padded"


class PaddedRows:
    """One padded text table ("positive", "affirmative" or "negated") and how to request a batch's rows."""

    def __init__(self, which: str):
        self.which = which
        self.ids: torch.Tensor | None = None
        self.mask: torch.Tensor | None = None
        self.read_mask = True

    def prepare(self, ctx: SetupContext) -> None:
        self.ids, self.mask = ctx.padded(self.which)
        self.read_mask = ctx.train.pipeline.attention_mask

    def collate(self, index: torch.Tensor) -> dict[str, Any]:
        return {f"{self.which}_ids": self.ids[index], f"{self.which}_mask": self.mask[index]}

    def request(self, rows: dict[str, Any], base: bool = False) -> Request:
        """The request for this batch's rows; the mask travels only when the pipeline passes one."""
        return Request(VIEW, self.which, rows[f"{self.which}_ids"],
                       rows[f"{self.which}_mask"] if self.read_mask else None, base=base)
