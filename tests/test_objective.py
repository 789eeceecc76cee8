"""Batches carry every term's targets, and the objective read from a batch equals the loss terms computed
by hand from the examples (a second route that never looks at the batch's row bookkeeping)."""

import hashlib

import pytest
import torch
import torch.nn.functional as F

from negation_encoder.data import NegationRecord
from negation_encoder.testing import tiny
from negation_encoder.training import TrainConfig
from negation_encoder.training.batching import (
    TokenTable,
    collate,
    distractor_keys,
    example_texts,
    examples_from_records,
)
from negation_encoder.training.checks import build_terms
from negation_encoder.training.objective import NegationObjective
from negation_encoder.training.terms import Encoded, SetupContext, StepInfo, StepOutputs
from negation_encoder.training.terms.distractor import DistractorLoss
from negation_encoder.training.terms.infonce import ClipInfoNCE

D = 8


def _records() -> list[NegationRecord]:
    def rec(i, **kw):
        base = dict(id=f"r{i}", image=f"{i}.png", caption=f"a photo of a dog and a cup {i}",
                    negated_caption=f"a photo of a dog and a cup {i} with no cat", negation_type="absence",
                    negated_concept="cat", source="test")
        base.update(kw)
        return NegationRecord(**base)

    return [
        rec(0, hard_negatives=["a photo of a dog and a cup 0 with a cat"], extra={"distractor_images": ["d0.png"]}),
        rec(1, negated_caption="a photo with no cat", hard_negatives=["a photo with a cat", "a cat"]),
        rec(2, negated_caption="a photo without a dog", negation_type="presence", negated_concept="dog",
            extra={"extra_positives": ["a photo with a dog"]}),
        rec(3, extra={"distractor_images": ["d0.png", "d3.png"]}),
    ]


def _vec(text: str) -> torch.Tensor:
    """A fixed unit vector per text (the 'text encoder' of this test)."""
    g = torch.Generator().manual_seed(int(hashlib.sha256(text.encode()).hexdigest()[:8], 16))
    return F.normalize(torch.randn(D, generator=g, dtype=torch.float64), dim=0)


W = dict(infonce=0.7, mcq=1.3, distractor=0.5, split_distill=0.9, preserve_embeds=2.0)


def _config(weights=W) -> TrainConfig:
    return TrainConfig.from_dict({"data": {"max_foils": 2}, "objective": {
        **{t: w for t, w in weights.items() if t != "distractor"},
        **({"distractor": {"weight": weights["distractor"], "max_images": 2}} if "distractor" in weights else {})}})


@pytest.fixture(scope="module")
def setting():
    records = _records()
    cfg = _config()
    terms = build_terms(cfg)
    keys = list(dict.fromkeys([r.image for r in records] + [k for r in records for k in distractor_keys(r)]))
    examples = examples_from_records(records, terms, {k: i for i, k in enumerate(keys)})
    table = TokenTable(tiny.build_clip_tokenizer(), example_texts(examples))
    g = torch.Generator().manual_seed(1)
    images = F.normalize(torch.randn(len(keys), D, generator=g, dtype=torch.float64), dim=-1)
    term = {t.name: t for t in terms}
    term["distractor"].prepare(SetupContext(cfg, None, None, None, examples, images, keys, torch.device("cpu")))
    # the frozen base's readings, fixed here (prepare would compute them from a model)
    term["preserve_embeds"].targets = F.normalize(torch.randn(len(examples), D, generator=g, dtype=torch.float64), dim=-1)
    term["split_distill"].targets = F.normalize(torch.randn(len(examples), D, generator=g, dtype=torch.float64), dim=-1)
    return records, examples, table, images, terms


def _batch(setting, order):
    _, examples, table, images, terms = setting
    return collate([examples[i] for i in order], table, images, 2, order, terms)


def _texts_of(batch, table) -> list[str]:
    """The text of each row of `batch.input_ids`, read back through the token table."""
    back = {tuple(ids): t for t, ids in table.ids.items()}
    return [back[tuple(row[m.bool()].tolist())] for row, m in zip(batch.input_ids, batch.attention_mask, strict=True)]


def _outputs(batch, table, scale=3.0) -> StepOutputs:
    """The step's encodings, with `_vec` as the text encoder (hidden states unused by these terms)."""
    emb = torch.stack([_vec(t) for t in _texts_of(batch, table)])
    hidden = torch.zeros(len(emb), batch.input_ids.shape[1], 4, dtype=torch.float64)
    return StepOutputs(Encoded(hidden, emb, emb), {}, torch.tensor(scale, dtype=torch.float64))


def _objective(batch, terms, out):
    objective = NegationObjective(terms)
    return objective(out, batch, objective.plan(batch, StepInfo(0, 0)))


def test_collate_copies_each_examples_target_rows(setting):
    _, examples, table, images, terms = setting
    term = {t.name: t for t in terms}
    order = [3, 0, 2]
    batch = _batch(setting, order)
    assert torch.equal(batch.image_emb, images[[examples[i].image for i in order]])
    for name in ("preserve_embeds", "split_distill"):
        assert torch.equal(batch.terms[name]["target"], term[name].targets[order]), name
    assert batch.terms["split_distill"]["rows"].tolist() == [True, True, False]  # the presence example negates nothing
    # example 3 has two distractors, example 0 one, the presence example none
    dist = batch.terms["distractor"]
    key = {k: i for i, k in enumerate(dict.fromkeys([r.image for r in _records()]
                                                     + [k for r in _records() for k in distractor_keys(r)]))}
    assert torch.equal(dist["emb"][0], images[[key["d0.png"], key["d3.png"]]])
    assert torch.equal(dist["emb"][1, 0], images[key["d0.png"]])
    assert dist["images"][2].tolist() == [-1, -1]
    moved = batch.to("cpu")
    assert torch.equal(moved.terms["preserve_embeds"]["target"], batch.terms["preserve_embeds"]["target"])


BARE = [False, True, False, False]  # record 1, "a photo with no cat", affirms nothing
NEGATES = [True, True, False, True]  # the splitter finds a negation in the true caption


def _by_hand(setting, order, scale, w) -> torch.Tensor:
    """The weighted objective from the examples themselves (texts -> `_vec`), one term at a time."""
    records, examples, _, images, terms = setting
    term = {t.name: t for t in terms}
    key = {k: i for i, k in enumerate(dict.fromkeys([r.image for r in records]
                                                     + [k for r in records for k in distractor_keys(r)]))}
    ex = [examples[i] for i in order]
    img = images[[e.image for e in ex]]
    pos = torch.stack([_vec(e.positive) for e in ex])
    ids = torch.tensor([e.image for e in ex])
    text_ids = torch.tensor([-1 if BARE[i] else examples[i].image for i in order])
    total = w["infonce"] * ClipInfoNCE()(img, pos, scale, image_ids=ids, text_ids=text_ids)
    mcq = []  # one question per true caption of an example with foils: CE towards index 0
    for e, im in zip(ex, img, strict=True):
        for true in (e.positive, *e.extra_positives):
            if e.foils:
                logits = scale * torch.stack([_vec(t) for t in (true, *e.foils[:2])]) @ im
                mcq.append(torch.logsumexp(logits, 0) - logits[0])
    total = total + w["mcq"] * torch.stack(mcq).mean()
    own = [[key[k] for k in records[i].distractor_images or []] if not ex_.presence else []
           for i, ex_ in zip(order, ex, strict=True)]
    k = max(len(d) for d in own)
    dist = torch.stack([images[d + [0] * (k - len(d))] for d in own])
    mask = torch.tensor([[j < len(d) for j in range(k)] for d in own])
    total = total + w["distractor"] * DistractorLoss()(pos, img, dist, mask, scale)
    keep = torch.tensor([NEGATES[i] for i in order])
    split = (1 - (pos * term["split_distill"].targets[order]).sum(-1))[keep].mean()
    orig = torch.stack([_vec(e.original) for e in ex])
    kept = (1 - (orig * term["preserve_embeds"].targets[order]).sum(-1)).mean()
    return total + w["split_distill"] * split + w["preserve_embeds"] * kept


def test_objective_from_the_batch_equals_the_terms_by_hand(setting):
    _, _, table, _, terms = setting
    order = [1, 3, 0, 2]
    batch = _batch(setting, order)
    out = _outputs(batch, table)
    total, parts = _objective(batch, terms, out)
    assert set(parts) == set(W)
    expect = _by_hand(setting, order, out.logit_scale, W)
    assert total.item() == pytest.approx(expect.item(), rel=1e-12)


ALL = {"infonce": 1.0, "mcq": 1.0, "omni_presence": 1.0, "omni_absence": 1.0, "distractor": 1.0,
       "split_distill": 1.0, "preserve": 1.0, "preserve_embeds": 1.0, "preserve_states": 1.0, "omit_states": 1.0,
       "unet_loss": {"weight": 1.0, "model": "unused"}}


def test_eligibility_reads_fields_and_the_split_never_string_containment():
    """Each term's records, by hand; the rewrites keep none of their caption's words verbatim."""

    def rec(**kw):
        base = dict(id="x", image="0.png", caption="a red cup on a white table", negated_caption="a red cup with no fork",
                    negation_type="absence", negated_concept="fork", source="test")
        return NegationRecord(**{**base, **kw})

    def fed(r, **options):
        objective = {t: ({**w, **options[t]} if isinstance(w, dict) else {"weight": w, **options[t]})
                     if t in options else w for t, w in ALL.items()}
        terms = build_terms(TrainConfig.from_dict({"objective": objective}))
        return set(examples_from_records([r], terms)[0].eligible)

    always = {"preserve", "preserve_embeds", "preserve_states"}
    # a rewrite that drops the caption's words but still affirms "a red cup": InfoNCE takes it
    negated = {"split_distill", "omit_states", "unet_loss"}  # read from the splitter: the true caption negates something
    assert fed(rec()) == {"infonce", "omni_absence"} | negated | always
    # the caption verbatim inside a negation that affirms it: the same terms (containment plays no part)
    assert fed(rec(negated_caption="a red cup on a white table with no fork")) == fed(rec())
    # a bare negation affirms nothing: out of InfoNCE, unless asked for
    bare = rec(negated_caption="a photo with no fork here", hard_negatives=["a photo with a fork"])
    assert fed(bare) == {"mcq", "omni_absence"} | negated | always
    assert "infonce" in fed(bare, infonce={"on_bare": True})
    # presence: the original caption is the true one; its negated caption is a foil
    presence = rec(negated_caption="a photo with no cup", negation_type="presence", negated_concept="cup")
    assert fed(presence) == {"infonce", "mcq", "omni_presence"} | always
    # distractor images feed the distractor term (not for presence records, whose image has the concept)
    assert "distractor" in fed(rec(negation_type="attribute", extra={"distractor_images": ["1.png"]}))
    assert "distractor" not in fed(rec(negation_type="presence", extra={"distractor_images": ["1.png"]}))
    # omit_states' types narrow it to the named negation types, and nothing else
    absence_only = {"omit_states": {"types": ["absence"]}}
    attribute = rec(negation_type="attribute", negated_caption="a red cup on a white table, the cup is not blue")
    assert "omit_states" in fed(attribute) and "omit_states" not in fed(attribute, **absence_only)
    assert fed(attribute, **absence_only) == fed(attribute) - {"omit_states"}
    assert fed(rec(), **absence_only) == fed(rec())
    # the distractor term's types narrow it the same way
    flipped = rec(negation_type="attribute", extra={"distractor_images": ["1.png"]})
    absent = rec(extra={"distractor_images": ["1.png"]})
    assert fed(flipped, distractor={"types": ["absence"]}) == fed(flipped) - {"distractor"}
    assert fed(absent, distractor={"types": ["absence"]}) == fed(absent) and "distractor" in fed(absent)
    # its sources narrow it by the record's source: referring crops in, P2's answer-flipped images out
    crop = rec(negation_type="attribute", source="crops", extra={"distractor_images": ["1.png"]})
    p2 = rec(negation_type="attribute", source="p2", extra={"distractor_images": ["1.png"]})
    assert "distractor" in fed(crop, distractor={"sources": ["p1", "crops"]})
    assert fed(p2, distractor={"sources": ["p1", "crops"]}) == fed(p2) - {"distractor"}
    assert fed(crop, distractor={"types": ["absence"], "sources": ["crops"]}) == fed(crop) - {"distractor"}


def test_a_batch_without_mcq_questions_scores_mcq_zero(setting):
    """Eligibility can leave a batch with no MCQ question (no example with foils): the term is 0, not an error."""
    _, examples, table, images, _ = setting
    terms = build_terms(_config({"mcq": 1.0}))
    order = [3]  # an absence record without hard negatives
    batch = collate([examples[i] for i in order], table, images, 2, order, terms)
    assert batch.terms["mcq"]["choices"].shape == (0, 3) and batch.terms["mcq"]["example"].dtype == torch.long
    total, parts = _objective(batch, terms, _outputs(batch, table))
    assert parts["mcq"].item() == 0.0 and total.item() == 0.0
