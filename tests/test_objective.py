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
    ExampleTargets,
    TokenTable,
    all_texts,
    collate,
    distractor_keys,
    example_from_record,
)
from negation_encoder.training.losses import ClipInfoNCE, DistractorLoss
from negation_encoder.training.objective import NegationObjective

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


@pytest.fixture(scope="module")
def setting():
    records = _records()
    keys = list(dict.fromkeys([r.image for r in records] + [k for r in records for k in distractor_keys(r)]))
    key_index = {k: i for i, k in enumerate(keys)}
    examples = [example_from_record(r, key_index[r.image], key_index) for r in records]
    table = TokenTable(tiny.build_clip_tokenizer(), all_texts(examples))
    g = torch.Generator().manual_seed(1)
    targets = ExampleTargets(
        images=F.normalize(torch.randn(len(keys), D, generator=g, dtype=torch.float64), dim=-1), distractors=True,
        base_embed=F.normalize(torch.randn(len(examples), D, generator=g, dtype=torch.float64), dim=-1),
        split_target=F.normalize(torch.randn(len(examples), D, generator=g, dtype=torch.float64), dim=-1))
    return records, examples, table, targets


def _texts_of(batch, table) -> list[str]:
    """The text of each row of `batch.input_ids`, read back through the token table."""
    back = {tuple(ids): t for t, ids in table.ids.items()}
    return [back[tuple(row[m.bool()].tolist())] for row, m in zip(batch.input_ids, batch.attention_mask, strict=True)]


def test_collate_copies_each_examples_target_rows(setting):
    _, examples, table, targets = setting
    order = [3, 0, 2]
    batch = collate([examples[i] for i in order], table, max_foils=2, max_distractors=2, example_index=order,
                    targets=targets)
    assert torch.equal(batch.image_emb, targets.images[[examples[i].image for i in order]])
    for name in ("base_embed", "split_target"):
        assert torch.equal(getattr(batch, name), getattr(targets, name)[order]), name
    assert batch.split_mask.tolist() == [True, True, False]  # the presence example's true caption negates nothing
    # example 3 has two distractors, example 0 one, the presence example none
    assert torch.equal(batch.distractor_emb[0], targets.images[list(examples[3].distractors)])
    assert torch.equal(batch.distractor_emb[1, 0], targets.images[examples[0].distractors[0]])
    assert batch.distractors[2].tolist() == [-1, -1]
    moved = batch.to("cpu")
    assert moved.base_embed is not None and torch.equal(moved.image_emb, batch.image_emb)
    bare = collate(examples[:2], table, max_foils=2)  # no targets: no target fields
    assert bare.image_emb is None and bare.split_target is None and bare.to("cpu").base_embed is None
    with pytest.raises(ValueError, match="example_index"):
        collate(examples[:2], table, max_foils=2, targets=targets)


BARE = [False, True, False, False]  # record 1, "a photo with no cat", affirms nothing
NEGATES = [True, True, False, True]  # the splitter finds a negation in the true caption


def _by_hand(examples, order, targets, scale, w) -> torch.Tensor:
    """The weighted objective from the examples themselves (texts -> `_vec`), one term at a time."""
    ex = [examples[i] for i in order]
    img = targets.images[[e.image for e in ex]]
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
    k = max(len(e.distractors) for e in ex)
    dist = torch.stack([targets.images[list(e.distractors) + [0] * (k - len(e.distractors))] for e in ex])
    mask = torch.tensor([[j < len(e.distractors) for j in range(k)] for e in ex])
    total = total + w["distractor"] * DistractorLoss()(pos, img, dist, mask, scale)
    keep = torch.tensor([NEGATES[i] for i in order])
    split = (1 - (pos * targets.split_target[order]).sum(-1))[keep].mean()
    orig = torch.stack([_vec(e.original) for e in ex])
    kept = (1 - (orig * targets.base_embed[order]).sum(-1)).mean()
    return total + w["split_distill"] * split + w["preserve_embeds"] * kept


def test_objective_from_the_batch_equals_the_terms_by_hand(setting):
    _, examples, table, targets = setting
    w = dict(infonce=0.7, mcq=1.3, distractor=0.5, split_distill=0.9, preserve_embeds=2.0)
    cfg = TrainConfig(**w, max_foils=2, max_distractors=2)
    order = [1, 3, 0, 2]
    batch = collate([examples[i] for i in order], table, cfg.max_foils, max_distractors=2, example_index=order,
                    targets=targets)
    emb = torch.stack([_vec(t) for t in _texts_of(batch, table)])
    hidden = torch.zeros(len(emb), batch.input_ids.shape[1], 4, dtype=torch.float64)
    scale = torch.tensor(3.0, dtype=torch.float64)
    total, parts = NegationObjective(cfg)(emb, hidden, batch, scale)
    assert set(parts) == set(w)
    expect = _by_hand(examples, order, targets, scale, w)
    assert total.item() == pytest.approx(expect.item(), rel=1e-12)


def test_eligibility_reads_fields_and_the_split_never_string_containment():
    """Each term's records, by hand; the rewrites keep none of their caption's words verbatim."""
    from negation_encoder.training.batching import eligibility

    def rec(**kw):
        base = dict(id="x", image="0.png", caption="a red cup on a white table", negated_caption="a red cup with no fork",
                    negation_type="absence", negated_concept="fork", source="test")
        return NegationRecord(**{**base, **kw})

    def fed(r, **kw):
        return {t for t, ok in eligibility(r, **kw).items() if ok}

    always = {"preserve", "preserve_embeds", "preserve_states"}
    # a rewrite that drops the caption's words but still affirms "a red cup": InfoNCE takes it
    negated = {"split_distill", "omit_states", "unet_loss"}  # read from the splitter: the true caption negates something
    assert fed(rec()) == {"infonce", "omni_absence"} | negated | always
    # the caption verbatim inside a negation that affirms it: the same terms (containment plays no part)
    assert fed(rec(negated_caption="a red cup on a white table with no fork")) == fed(rec())
    # a bare negation affirms nothing: out of InfoNCE, unless asked for
    bare = rec(negated_caption="a photo with no fork here", hard_negatives=["a photo with a fork"])
    assert fed(bare) == {"mcq", "omni_absence"} | negated | always
    assert "infonce" in fed(bare, infonce_on_bare=True)
    # presence: the original caption is the true one; its negated caption is a foil
    presence = rec(negated_caption="a photo with no cup", negation_type="presence", negated_concept="cup")
    assert fed(presence) == {"infonce", "mcq", "omni_presence"} | always
    # distractor images feed the distractor term (not for presence records, whose image has the concept)
    assert "distractor" in fed(rec(negation_type="attribute", extra={"distractor_images": ["1.png"]}))
    assert "distractor" not in fed(rec(negation_type="presence", extra={"distractor_images": ["1.png"]}))
    # omit_types narrows omit_states to the named negation types, and nothing else
    attribute = rec(negation_type="attribute", negated_caption="a red cup on a white table, the cup is not blue")
    assert "omit_states" in fed(attribute) and "omit_states" not in fed(attribute, omit_types=("absence",))
    assert fed(attribute, omit_types=("absence",)) == fed(attribute) - {"omit_states"}
    assert fed(rec(), omit_types=("absence",)) == fed(rec())
    # distractor_types narrows the distractor term the same way
    flipped = rec(negation_type="attribute", extra={"distractor_images": ["1.png"]})
    absent = rec(extra={"distractor_images": ["1.png"]})
    assert fed(flipped, distractor_types=("absence",)) == fed(flipped) - {"distractor"}
    assert fed(absent, distractor_types=("absence",)) == fed(absent) and "distractor" in fed(absent)
    # distractor_sources narrows it by the record's source: referring crops in, P2's answer-flipped images out
    crop = rec(negation_type="attribute", source="crops", extra={"distractor_images": ["1.png"]})
    p2 = rec(negation_type="attribute", source="p2", extra={"distractor_images": ["1.png"]})
    assert "distractor" in fed(crop, distractor_sources=("p1", "crops"))
    assert fed(p2, distractor_sources=("p1", "crops")) == fed(p2) - {"distractor"}
    assert fed(crop, distractor_types=("absence",), distractor_sources=("crops",)) == fed(crop) - {"distractor"}


def test_a_batch_without_mcq_questions_scores_mcq_zero(setting):
    """Eligibility can leave a batch with no MCQ question (no example with foils): the term is 0, not an error."""
    _, examples, table, targets = setting
    order = [3]  # an absence record without hard negatives
    batch = collate([examples[i] for i in order], table, 2, 2, example_index=order, targets=targets)
    assert batch.mcq_choices.shape == (0, 3) and batch.mcq_example.dtype == torch.long
    emb = torch.stack([_vec(t) for t in _texts_of(batch, table)])
    hidden = torch.zeros(len(emb), batch.input_ids.shape[1], 4, dtype=torch.float64)
    total, parts = NegationObjective(TrainConfig(infonce=0.0, mcq=1.0))(emb, hidden, batch,
                                                                         torch.tensor(3.0, dtype=torch.float64))
    assert parts["mcq"].item() == 0.0 and total.item() == 0.0
