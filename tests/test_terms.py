"""Loss terms are plug-ins: a term defined here, registered with one line, trains through the real trainer
with nothing else changed; an enabled term always gets its inputs."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from negation_encoder.configs import option
from negation_encoder.errors import InputError
from negation_encoder.training import REGISTRY, TrainConfig, train
from negation_encoder.training.batching import batch_indices, examples_from_records
from negation_encoder.training.checks import build_terms, load_training_records
from negation_encoder.training.terms import LossTerm, Plan, Request, StepInfo, TermConfig, TermLoss

from ._tiny_world import make_tiny_world


@dataclass
class AgreementConfig(TermConfig):
    target: float = option(0.5, "the cosine each true caption should have with its original caption")


class Agreement(LossTerm):
    """A toy term: on absence records, (cos(true caption, original caption) - target)^2, read from the
    batch's shared text rows; it also asks for the frozen base's reading of the originals (a per-step block)
    and logs how far the tower's hidden states have moved from it, to show a term's own request arrives."""

    name = "toy_agreement"
    config_class = AgreementConfig
    summary = "a test term"
    records = "absence records"
    needs_base_tower = True

    def eligible(self, example) -> bool:
        return example.negation_type == "absence"

    def collate(self, examples, index, texts, foils):
        return {"rows": torch.tensor([self.name in ex.eligible for ex in examples], dtype=torch.bool)}

    def plan(self, batch, info) -> Plan:
        rows = batch.original
        return Plan([Request("toy", "originals", batch.input_ids[rows], batch.attention_mask[rows], base=True)],
                    data=info.step)

    def forward(self, out, batch, plan) -> TermLoss:
        rows = self.rows(batch)["rows"]
        base = out.block("toy", "originals", base=True).hidden
        assert base.shape == out.texts.hidden[batch.original].shape and plan.data >= 0
        cos = (out.texts.embeds[batch.positive] * out.texts.embeds[batch.original]).sum(-1)
        return TermLoss(((cos[rows] - self.config.target) ** 2).mean(), rows.sum())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_tiny_world(tmp_path_factory.mktemp("terms"))


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(REGISTRY, Agreement.name, Agreement)  # what `@register` does, undone after the test
    return Agreement


def _config(world, out, objective) -> TrainConfig:
    return TrainConfig.from_dict({
        "model": {"base": world["base"]}, "data": {"files": [world["data"]], "images": world["images"]},
        "optim": {"steps": 2, "batch_size": 8, "lr": 1e-3, "warmup_steps": 0},
        "run": {"out": str(out), "log_every": 1, "save_every": 2}, "objective": objective})


def test_a_registered_toy_term_trains_through_the_real_trainer(world, tmp_path, toy):
    cfg = _config(world, tmp_path / "run", {"toy_agreement": {"weight": 1.0, "target": 0.2}})
    assert cfg.enabled_terms() == ["toy_agreement"]
    res = train(cfg, progress=False, echo=None)
    header, *log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    records = load_training_records([world["data"]]).records
    assert header["eligible"] == {"toy_agreement": sum(r.negation_type == "absence" for r in records)}
    assert [e["step"] for e in log] == [1, 2] and all("toy_agreement" in e for e in log)
    # the first step is taken at the base's weights: its logged value is the term computed by hand
    from transformers import CLIPModel, CLIPTokenizer

    from negation_encoder.encoding import encode_texts

    examples = examples_from_records(records, build_terms(cfg))
    mine = [examples[i] for i in batch_indices(0, 0, len(examples), 8, 1, 0)]
    mine = [ex for ex in mine if "toy_agreement" in ex.eligible]
    model, tok = CLIPModel.from_pretrained(world["base"]).eval(), CLIPTokenizer.from_pretrained(world["base"])
    pos, orig = (encode_texts(model, tok, [getattr(ex, f) for ex in mine]) for f in ("positive", "original"))
    hand = (((pos * orig).sum(-1) - 0.2) ** 2).mean().item()
    assert log[0]["toy_agreement"] == pytest.approx(hand, rel=1e-4)
    saved = json.loads((res.model_dir / "training_config.json").read_text())
    assert saved["objective"]["toy_agreement"] == {"weight": 1.0, "target": 0.2}
    assert saved["objectives"] == {"toy_agreement": {"weight": 1.0, "target": 0.2}}  # what the card lists


def test_a_term_is_configured_like_every_other_term(toy):
    cfg = TrainConfig().override(["objective.toy_agreement.target=0.7", "objective.mcq=0"])
    assert cfg.objective["toy_agreement"].target == 0.7 and cfg.objective["toy_agreement"].weight == 1.0
    assert cfg.enabled_terms() == ["infonce", "toy_agreement"]
    with pytest.raises(InputError, match=r"objective.toy_agreement: weight must be a finite number >= 0, got -1.0"):
        TrainConfig.from_dict({"objective": {"toy_agreement": -1.0}})


def test_an_unregistered_term_is_refused_by_name():
    with pytest.raises(InputError, match="unknown loss term 'toy_agreement'; registered terms: infonce, mcq"):
        TrainConfig.from_dict({"objective": {"toy_agreement": 1.0}})


def test_a_term_no_record_feeds_stops_the_run_before_compute(world, tmp_path, toy, monkeypatch):
    monkeypatch.setattr(Agreement, "eligible", lambda self, example: False)
    out = tmp_path / "none"
    with pytest.raises(InputError, match="toy_agreement: no eligible record: none of the .* records feeds it "
                                         r"\(absence records\); set objective.toy_agreement.weight: 0"):
        train(_config(world, out, {"toy_agreement": 1.0}), progress=False, echo=None)
    assert not (out / "image_cache").exists()


def test_the_unet_term_counts_the_rows_it_trains(world):
    """unet_loss feeds on every negated true caption, whatever another term's narrowing (omit_states' types):
    the rows it trains on are its own eligible rows, so the logged count is what it trains."""
    cfg = TrainConfig.from_dict({"objective": {"omit_states": {"weight": 1.0, "types": ["attribute"]},
                                               "unet_loss": {"weight": 1.0, "model": "unused"}}})
    terms = build_terms(cfg)
    examples = examples_from_records(load_training_records([world["data"]]).records, terms)
    unet = [ex.has_negation for ex in examples]
    assert [("unet_loss" in ex.eligible) for ex in examples] == unet and any(unet)
    assert sum("omit_states" in ex.eligible for ex in examples) < sum(unet)
    from negation_encoder.testing import tiny
    from negation_encoder.training.batching import TokenTable, collate, example_texts

    unet_term = next(t for t in terms if t.name == "unet_loss")
    for t in terms:  # what the terms' prepare would fix, without the frozen models
        for rows in [getattr(t, n) for n in ("positive", "affirmative", "negated") if hasattr(t, n)]:
            rows.ids = rows.mask = torch.zeros(len(examples), 4, dtype=torch.long)
    batch = collate(examples[:8], TokenTable(tiny.build_clip_tokenizer(), example_texts(examples[:8])),
                    torch.zeros(len(examples), 2), 3, range(8), terms)
    assert batch.terms["unet_loss"]["rows"].tolist() == unet[:8]
    picked, _ = unet_term.plan(batch, StepInfo(0, 0)).data
    assert picked.tolist() == [i for i in range(8) if unet[i]]
