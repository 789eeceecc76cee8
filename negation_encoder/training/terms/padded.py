"""The rows of a pipeline-padded reading that several terms share: every example's text padded to the
downstream pipeline's length, read with or without the attention mask and at the layer that pipeline reads
(`pipeline` in the config; `negation_encoder.conditioning`). A block requested by several terms is encoded
once."""

from __future__ import annotations

from typing import Any

import torch

from ...errors import ConfigError
from .base import BaseTable, CheckContext, Request, SetupContext, StepOutputs

VIEW = "padded"


class PaddedRows:
    """One padded text table ("positive", "affirmative" or "negated") and how to request a batch's rows."""

    def __init__(self, which: str):
        self.which = which
        self.ids: torch.Tensor | None = None
        self.mask: torch.Tensor | None = None
        self.read_mask = True
        self.layer, self.final_norm = -1, True
        self.base: BaseTable | None = None

    @staticmethod
    def check(term: str, ctx: CheckContext) -> None:
        """A term that trains token states needs a pipeline that reads them."""
        pipe = ctx.train.pipeline
        if pipe.reading().states_layer is None:
            raise ConfigError(f"{term} trains the token states a pipeline reads, and a {pipe.family} pipeline reads "
                              "none (only a pooled output); set its weight to 0 or pipeline.family to one that does")

    def prepare(self, ctx: SetupContext, base: bool = False) -> None:
        """`base`: the term compares against the frozen base's reading of these rows: kept per example when
        it fits (`SetupContext.base_states`), else requested per step."""
        self.ids, self.mask = ctx.padded(self.which)
        how = ctx.train.pipeline.reading()
        self.read_mask, self.layer, self.final_norm = how.attention_mask, how.states_layer, how.final_norm
        if base:
            self.base = ctx.base_states(self.which)

    def collate(self, index: torch.Tensor) -> dict[str, Any]:
        rows = {f"{self.which}_ids": self.ids[index], f"{self.which}_mask": self.mask[index]}
        if self.base is not None:
            rows[f"{self.which}_base"] = self.base.rows(index)
        return rows

    def base_requests(self, rows: dict[str, Any]) -> list[Request]:
        """The per-step request for the base's reading of these rows, or none when it is kept."""
        return [] if self.base is not None else [self.request(rows, base=True)]

    def base_states(self, out: StepOutputs, rows: dict[str, Any]):
        """(B, L, D) the base's reading of this batch's rows, kept or encoded this step."""
        if self.base is not None:
            return rows[f"{self.which}_base"]
        return out.block(VIEW, self.which, base=True).hidden

    def request(self, rows: dict[str, Any], base: bool = False) -> Request:
        """The request for this batch's rows; the mask travels only when the pipeline passes one."""
        return Request(VIEW, self.which, rows[f"{self.which}_ids"],
                       rows[f"{self.which}_mask"] if self.read_mask else None, base=base, layer=self.layer,
                       final_norm=self.final_norm)
