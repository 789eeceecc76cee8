"""What a loss term is: its config, the inputs it declares, and the tensors it is handed each step.

A term is one module (open_clip's small loss modules, plus a registry: `terms.register`). The trainer and
the batching loop know no term by name; they call these hooks on every enabled term, in registry order:

- before any compute: `eligible(example)` (the records it trains on; the counts are logged, and a term no
  record feeds stops the run with `no_eligible_reason`), `image_keys(example)` (images beyond each record's
  own that must be embedded), `check(ctx)` (its own files and frozen models, one line per problem) and
  `data_files()` (what a resumed run must find unchanged);
- once, before the first step: `prepare(ctx)`, where a term fixes what it compares against (the frozen
  base's readings of every example, frozen downstream models);
- per micro-batch: `collate(...)` copies the term's rows into the batch (texts it adds join the batch's one
  padded text table), `plan(batch, info)` says which further texts it needs encoded (`Request`s, by the
  trained tower or the frozen base; a block two terms ask for is encoded once), and `forward(out, batch,
  plan)` returns the term's mean over its rows and how many rows that was (`TermLoss`).

An enabled term always gets its inputs: a missing one is an error, never a silent skip. Option fields
that name files take `path=True` (kept out of the model card) and, when the run may find them elsewhere
on `--resume`, `resume=True`.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ...configs import Validated, field_default, option

if TYPE_CHECKING:
    from ..batching import Batch, Example, TextRows


@dataclass
class TermConfig(Validated):
    """A term's weight and options. Subclasses add their options as `option(...)` fields and extend
    `problems()`; a field with `resume=True` metadata may change on `--resume` (where files are, not what
    trains)."""

    weight: float = option(1.0, "weight in the objective (0 turns the term off)")

    def problems(self) -> list[str]:
        p = super().problems()
        if not isinstance(self.weight, (int, float)) or not math.isfinite(self.weight) or self.weight < 0:
            p.append(f"weight must be a finite number >= 0, got {self.weight!r}")
        return p


@dataclass(frozen=True)
class Request:
    """Text a term needs encoded in this step. Requests of one `view` share one padded batch (so their
    rows must be padded alike); a (`view`, `block`, `base`) asked for by several terms is encoded once.
    `attention_mask` None: the text is read without a mask, as a pipeline that passes none reads it.
    `base`: encoded by the frozen base tower (no gradient) instead of the one being trained.
    `padding`: whether the term reads the states at padded positions (a pipeline's UNet does). A term that
    reads only the pooled output, or states under the mask, says False: its rows are then padded no
    further than their length needs, and the base's rows are kept without padding. `layer` and
    `final_norm`: which hidden states `Encoded.hidden` holds (`conditioning.Reading`: -1 with the norm is
    `last_hidden_state`; SDXL reads -2 without it)."""

    view: str
    block: str
    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    base: bool = False
    padding: bool = True
    layer: int = -1
    final_norm: bool = True

    @property
    def reading(self) -> tuple[int, bool]:
        return self.layer, self.final_norm

    @property
    def key(self) -> tuple[str, str, bool]:
        return self.view, self.block, self.base


@dataclass
class Encoded:
    """A text tower's reading of some rows: what each downstream consumer takes from it. The frozen base's
    per-step blocks carry hidden states only (its embeddings are fixed once, in `prepare`)."""

    hidden: torch.Tensor  # (R, L, D) hidden states as requested (`Request.layer`; by default last_hidden_state)
    projected: torch.Tensor | None  # (R, P) projected pooled output, unnormalised (CLIPSeg's conditional embedding)
    embeds: torch.Tensor | None  # (R, P) the same, L2-normalised (the contrastive terms' embedding)


@dataclass
class StepOutputs:
    """The encodings of one micro-batch: its distinct texts (`texts`, rows of `batch.input_ids`), every
    requested block, and the exponentiated logit scale."""

    texts: Encoded
    blocks: dict[tuple[str, str, bool], Encoded]
    logit_scale: torch.Tensor

    def block(self, view: str, block: str, base: bool = False) -> Encoded:
        return self.blocks[(view, block, base)]


@dataclass(frozen=True)
class StepInfo:
    """Where a micro-batch sits: seeded per-step sampling inside a term keys on these."""

    step: int
    micro: int
    rank: int = 0
    world: int = 1
    seed: int = 0
    grad_accum: int = 1


@dataclass
class Plan:
    """What a term asked for in one micro-batch: the texts to encode and any data it loaded for them."""

    requests: list[Request] = field(default_factory=list)
    data: Any = None


@dataclass
class TermLoss:
    """A term's value on this process's rows: the mean over them, and how many there were (the objective
    rescales by the counts so that N processes average to the one-process mean)."""

    value: torch.Tensor
    count: torch.Tensor | int


@dataclass
class CheckContext:
    """What a term may read before any compute: the run's config and the base model's config."""

    train: Any  # TrainConfig
    base_config: Any  # transformers CLIPConfig of the base


@dataclass
class SetupContext:
    """What a term may use in `prepare`: the frozen base (on the run's device), its tokenizer, every
    example in training-set order, the image-embedding table and its keys, and the run's cache of frozen
    models' outputs (None when the config keeps none)."""

    train: Any  # TrainConfig
    model: nn.Module  # the base CLIPModel, frozen (its text tower is about to train: read it here, not later)
    base_text: nn.Module | None  # a frozen copy of the base text tower, kept for per-step targets
    tokenizer: Any
    examples: Sequence[Example]
    images: torch.Tensor  # (K, D) cached image embeddings, rows in `keys` order
    keys: list[str]
    device: torch.device
    cache: Any = None  # frozen_cache.FrozenCache
    _padded: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    _base: dict[str, BaseTable | None] = field(default_factory=dict)

    @property
    def frozen_dtype(self) -> torch.dtype:
        """The dtype frozen models run in (`optim.frozen_dtype`); they hand their outputs on in float32."""
        return getattr(torch, self.train.optim.frozen_dtype)

    @property
    def key_index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}

    def padded(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, L) token ids and attention masks of every example's `which` text ("positive", "affirmative":
        the splitter's affirmative part of it, "negated": its negated concepts, "twin": a negated caption's
        affirmative twin, its first extra positive) padded to the downstream
        pipeline's length (`pipeline.length`), as a pipeline tokenizes prompts. Computed once per run and
        shared by the terms that read them."""
        if which not in self._padded:
            texts = [_padded_text(ex, which) for ex in self.examples]
            enc = self.tokenizer(texts, padding="max_length", max_length=self.train.pipeline.length,
                                 truncation=True, return_tensors="pt")
            self._padded[which] = (enc.input_ids, enc.attention_mask)
        return self._padded[which]


    def base_states(self, which: str) -> BaseTable | None:
        """The frozen base's reading (the pipeline's layer, norm and mask) of every example's padded `which`
        text, computed once per distinct text in a fixed order (a resumed run reads exactly what an
        uninterrupted one read), shared by the terms that compare against it; None when it does not fit
        in the frozen-output budget (the terms then request it per step)."""
        if which not in self._base:
            self._base[which] = None
            if self.cache is not None and self.base_text is not None:
                ids, mask = self.padded(which)
                texts = [_padded_text(ex, which) for ex in self.examples]
                first = {t: i for i, t in reversed(list(enumerate(texts)))}
                distinct = sorted(first.values())
                width = self.base_text.config.hidden_size
                if self.cache.reserve(f"base {which} states", len(distinct) * ids.shape[1] * width * 4):
                    self._base[which] = _base_table(self, ids, mask, distinct, [first[t] for t in texts])
        return self._base[which]


@dataclass
class BaseTable:
    """Frozen readings per distinct text: `states[index[i]]` belongs to example i."""

    states: torch.Tensor  # (U, L, D)
    index: torch.Tensor  # (N,) long

    def rows(self, examples: torch.Tensor) -> torch.Tensor:
        return self.states[self.index[examples]]


@torch.no_grad()
def _base_table(ctx: SetupContext, ids: torch.Tensor, mask: torch.Tensor, distinct: list[int], owner: list[int],
                chunk: int = 256) -> BaseTable:
    from ...conditioning import read_text

    how = ctx.train.pipeline.reading()
    position = {row: k for k, row in enumerate(distinct)}
    parts = []
    for start in range(0, len(distinct), chunk):
        rows = distinct[start: start + chunk]
        sub_ids, sub_mask = ids[rows].to(ctx.device), mask[rows].to(ctx.device)
        states = read_text(ctx.base_text, None, sub_ids, sub_mask if how.attention_mask else None,
                           dataclasses.replace(how, pooled=None))[0]
        parts.append(states.float().cpu())
    return BaseTable(torch.cat(parts), torch.tensor([position[o] for o in owner], dtype=torch.long))


def affirmative_twin(ex: Example) -> str | None:
    """A negated caption's affirmative twin: its first extra positive (the data pipelines write the same frame
    affirming another object there), or None."""
    return ex.extra_positives[0] if ex.has_negation and ex.extra_positives else None


def _padded_text(ex: Example, which: str) -> str:
    if which == "positive":
        return ex.positive
    if which == "affirmative":  # an example with no negation keeps its own caption (its rows are masked out)
        return ex.affirmative or ex.positive
    if which == "negated":
        return ex.negated or ""
    if which == "twin":  # an example with no affirmative twin has none (its rows are never requested)
        return affirmative_twin(ex) or ""
    raise ValueError(f"no padded text {which!r}: expected positive, affirmative, negated or twin")


class LossTerm(nn.Module, abc.ABC):
    """One weighted term of the objective. Subclasses set `name`, `config_class` and `summary`, and
    override the hooks they need (module docstring); the defaults describe a term that trains on every
    record and needs nothing beyond the batch's texts and images."""

    name: ClassVar[str]
    config_class: ClassVar[type[TermConfig]] = TermConfig
    summary: ClassVar[str] = ""  # one line: what it does (`negenc train --help`, the docs' table)
    records: ClassVar[str] = "every record"  # which records feed it, in words
    reads_records: ClassVar[bool] = True  # fed by NegationRecords (eligibility counted before compute)
    regularizer: ClassVar[bool] = False  # only keeps things in place: at least one other term must train
    needs_base_tower: ClassVar[bool] = False  # reads the frozen base tower in every step

    def __init__(self, config: TermConfig, train: Any):
        super().__init__()
        self.config = config
        self.train_config = train

    @property
    def weight(self) -> float:
        return float(self.config.weight)

    # ---- before compute
    def eligible(self, example: Example) -> bool:
        return True

    def no_eligible_reason(self, n: int) -> str:
        """Why none of the `n` records feeds this term, and what to do (one phrase of a one-line error)."""
        return self.without(f"none of the {n} records feeds it ({self.records})")

    def without(self, why: str) -> str:
        return f"{why}; set objective.{self.name}.weight: 0 to train without it"

    def image_keys(self, example: Example) -> Iterable[str]:
        return ()

    def check(self, ctx: CheckContext) -> dict[str, Any]:
        """Check the term's own inputs (raise `InputError`); return entries for the log's header."""
        return {}

    def data_files(self) -> list[str]:
        return []

    # ---- once
    def prepare(self, ctx: SetupContext) -> None:
        pass

    # ---- per micro-batch
    def collate(self, examples: Sequence[Example], index: torch.Tensor, texts: TextRows,
                foils: torch.Tensor) -> dict[str, Any]:
        """The term's fields of a batch of `examples` (training-set rows `index`); `texts.row(t)` is the row
        of text `t` in the batch's shared text table (added if new), `foils` (B, F) the shared foil rows."""
        return {}

    def plan(self, batch: Batch, info: StepInfo) -> Plan:
        return Plan()

    @abc.abstractmethod
    def forward(self, out: StepOutputs, batch: Batch, plan: Plan) -> TermLoss:
        """The term's mean over this micro-batch's rows (and their count), from the encodings `out`."""

    def rows(self, batch: Batch) -> dict[str, Any]:
        """This term's fields of the batch."""
        return batch.terms[self.name]

    def describe(self) -> dict[str, Any]:
        """The term's settings as the model card lists them: its weight and the options that differ from
        their defaults, never a file or folder (`path=True` fields: a card carries no local path)."""
        return {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config)
                if f.name == "weight" or (not f.metadata.get("path")
                                          and getattr(self.config, f.name) != field_default(f))}
