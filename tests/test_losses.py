"""Loss values against numbers computed by hand, and where gradients flow."""

import math

import pytest
import torch
import torch.nn.functional as F

from negation_encoder.training.losses import cosine_distance
from negation_encoder.training.terms.distractor import DistractorLoss
from negation_encoder.training.terms.infonce import ClipInfoNCE, HardNegativeInfoNCE
from negation_encoder.training.terms.mcq import MultipleChoiceLoss
from negation_encoder.training.terms.omni import OmniAbsenceLoss, OmniPresenceLoss
from negation_encoder.training.terms.preserve import PreservationLoss


def _ce(logits, target):
    return -logits[target] + math.log(sum(math.exp(x) for x in logits))


def test_infonce_matches_hand_computation():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = F.normalize(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), dim=-1)
    scale = torch.tensor(2.0)
    s = 1 / math.sqrt(2)
    # i2t rows: [2s, 0], [2s, 2]; t2i rows: [2s, 2s], [0, 2]
    expect = (_ce([2 * s, 0], 0) + _ce([2 * s, 2], 1) + _ce([2 * s, 2 * s], 0) + _ce([0, 2], 1)) / 4
    ids = torch.tensor([0, 1])
    assert ClipInfoNCE()(img, txt, scale, image_ids=ids, text_ids=ids).item() == pytest.approx(expect, rel=1e-6)


def test_infonce_duplicate_image_ids_are_both_positives():
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ids = torch.tensor([7, 7])
    loss = ClipInfoNCE()(img, txt, torch.tensor(1.0), image_ids=ids, text_ids=ids)
    # i2t: both texts positive -> log(sum all / sum pos) = 0; t2i: both images positive -> 0
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_hard_negatives_only_enter_image_to_text():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    foils = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]])  # each image's foil looks like the other image
    mask = torch.tensor([[True], [True]])
    ids = torch.tensor([0, 1])
    scale = torch.tensor(1.0)
    got = HardNegativeInfoNCE()(img, txt, scale, image_ids=ids, text_ids=ids, foils=foils, foil_mask=mask).item()
    # i2t row 0 logits over [t0, t1, f0, f1] = [1, 0, 0, 1]; t2i row 0 = [1, 0]
    expect = (2 * _ce([1, 0, 0, 1], 0) + 2 * _ce([1, 0], 0)) / 4
    assert got == pytest.approx(expect, rel=1e-6)
    # masked-out foils change nothing versus plain InfoNCE
    plain = ClipInfoNCE()(img, txt, scale, image_ids=ids, text_ids=ids).item()
    assert HardNegativeInfoNCE()(img, txt, scale, image_ids=ids, text_ids=ids, foils=foils,
                                 foil_mask=~mask).item() == pytest.approx(plain, rel=1e-6)


def test_mcq_loss_hand_computed_and_rows_without_foils_ignored():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    choices = torch.tensor([[[1.0, 0.0], [0.6, 0.8], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    got = MultipleChoiceLoss()(img, choices, mask, torch.tensor(10.0)).item()
    assert got == pytest.approx(_ce([10.0, 6.0], 0), rel=1e-5)
    assert MultipleChoiceLoss()(img, choices, mask & torch.tensor([True, False, False]), torch.tensor(10.0)).item() == 0.0


def test_omni_presence_pushes_from_negated_caption():
    img = torch.tensor([[1.0, 0.0]])
    orig = torch.tensor([[1.0, 0.0]])
    neg = torch.tensor([[0.6, 0.8]])
    got = OmniPresenceLoss(temperature=0.5)(img, orig, neg, has_negated=torch.tensor([True]),
                                           image_ids=torch.tensor([0])).item()
    assert got == pytest.approx(_ce([2.0, 1.2], 0), rel=1e-6)
    assert OmniPresenceLoss()(img, orig, neg, has_negated=torch.tensor([False]), image_ids=torch.tensor([0])).item() == 0.0


def test_omni_absence_aligns_both_and_separates_texts():
    img = torch.tensor([[1.0, 0.0]])
    orig = torch.tensor([[1.0, 0.0]])
    neg = torch.tensor([[1.0, 0.0]])  # identical texts: cosine 1 > margin 0.8 -> penalty 0.2
    loss = OmniAbsenceLoss(temperature=1.0, margin=0.8, separation_weight=1.0)
    got = loss(img, orig, neg, has_negated=torch.tensor([True]), image_ids=torch.tensor([0])).item()
    assert got == pytest.approx(0.0 + 0.2, abs=1e-6)  # single candidate: alignment terms are 0
    apart = torch.tensor([[0.6, 0.8]])  # cosine 0.6 < margin: no separation penalty
    got = loss(img, orig, apart, has_negated=torch.tensor([True]), image_ids=torch.tensor([0])).item()
    assert got == pytest.approx(0.0, abs=1e-6)


def test_preservation_ignores_padding():
    h = torch.zeros(1, 3, 2)
    base = torch.tensor([[[1.0, 1.0], [0.0, 0.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert PreservationLoss()(h, base, mask).item() == pytest.approx(2.0 / 4)


def test_infonce_gradients_match_finite_differences_and_out_of_pool_texts_get_none():
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(4, 6, generator=g, dtype=torch.float64), dim=-1)
    txt = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.arange(4)
    text_ids = torch.tensor([0, 1, -1, 3])  # text 2 is a bare negation kept out of the pool
    foils = torch.randn(4, 2, 6, generator=g, dtype=torch.float64)
    mask = torch.tensor([[True, False], [True, True], [False, False], [True, False]])

    def plain(t):
        return ClipInfoNCE()(img, F.normalize(t, dim=-1), torch.tensor(5.0, dtype=torch.float64),
                             image_ids=ids, text_ids=text_ids)

    def hard(t):
        return HardNegativeInfoNCE()(img, F.normalize(t, dim=-1), torch.tensor(5.0, dtype=torch.float64),
                                     image_ids=ids, text_ids=text_ids, foils=foils, foil_mask=mask)

    for fn in (plain, hard):
        assert torch.autograd.gradcheck(fn, (txt,)), fn.__name__  # autograd vs finite differences
        (grad,) = torch.autograd.grad(fn(txt), txt)
        assert torch.equal(grad[2], torch.zeros(6, dtype=torch.float64)), f"{fn.__name__}: out-of-pool text moved"
        assert grad[[0, 1, 3]].abs().sum() > 0


def test_distractor_loss_hand_computed():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    own = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    distractors = torch.tensor([[[0.6, 0.8], [1.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True], [False, False]])  # row 1 has no distractor: it contributes nothing
    got = DistractorLoss()(text, own, distractors, mask, torch.tensor(2.0)).item()
    # row 0: logits 2 * [0.8, 0.6, 1.0] (own first), cross-entropy towards own
    assert got == pytest.approx(_ce([1.6, 1.2, 2.0], 0), rel=1e-6)
    assert DistractorLoss()(text, own, distractors, mask & False, torch.tensor(2.0)).item() == 0.0


def test_cosine_distance_hand_computed():
    """split_distill's and preserve_embeds' form: mean 1 - cosine to a fixed target over the marked rows."""
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    target = torch.tensor([[0.6, 0.8], [0.0, 1.0], [1.0, 0.0]])
    mask = torch.tensor([True, True, False])
    assert cosine_distance(text, target, mask).item() == pytest.approx(((1 - 0.6) + (1 - 1.0)) / 2)
    assert cosine_distance(text, target, mask & False).item() == 0.0
