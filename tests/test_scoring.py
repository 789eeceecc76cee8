"""The benchmark scoring rules on hand-made cases."""

import math

import pytest
import torch

from negation_encoder.eval import (
    existence_accuracy,
    mcq_scores,
    pairwise_accuracy,
    recall_at_k,
    zeroshot_accuracy,
)


def test_existence_is_strictly_greater():
    assert existence_accuracy(torch.tensor([0.5, 0.2, 0.3]), torch.tensor([0.4, 0.2, 0.9])) == pytest.approx(1 / 3)


def test_pairwise_argmax_equals_ref():
    sims = [torch.tensor([0.1, 0.9]), torch.tensor([0.8, 0.2]), torch.tensor([0.3, 0.4])]
    assert pairwise_accuracy(sims, [1, 1, 1]) == 2 / 3


def test_mcq_per_template_and_wrong_picks_and_perfect_model():
    sims = torch.tensor([[0.9, 0.1, 0.0, 0.0], [0.1, 0.9, 0.0, 0.0], [0.0, 0.0, 0.9, 0.1]])
    out = mcq_scores(sims, [0, 0, 2], ["positive", "negative", "hybrid"],
                     [["positive", "hybrid", "positive", "negative"]] * 3)
    assert out["mcq"] == pytest.approx(2 / 3)
    assert out["mcq_positive"] == 1.0 and out["mcq_negative"] == 0.0 and out["mcq_hybrid"] == 1.0
    assert out["mcq_wrong_picked_hybrid"] == 1.0
    perfect = mcq_scores(sims, [0, 1, 2], ["positive"] * 3, [["positive"] * 4] * 3)  # no wrong answers: no crash
    assert perfect["mcq"] == 1.0 and perfect["mcq_wrong_picked_positive"] == 0.0
    assert math.isnan(perfect["mcq_negative"])


def test_recall_at_k():
    text = torch.eye(3)
    image = torch.tensor([[1.0, 0, 0], [0, 0.5, 0.5], [0, 1.0, 0]])
    r = recall_at_k(text, image, [0, 1, 2], ks=(1, 2))
    # query 1 ranks image 2 (1.0) above its target (0.5); query 2's target ties at 0 behind image 1
    assert r[1] == pytest.approx(1 / 3) and r[2] == 1.0


def test_zeroshot_averages_templates():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    classes = torch.tensor([[[1.0, 0.0], [0.8, 0.6]], [[0.0, 1.0], [0.6, 0.8]]])
    assert zeroshot_accuracy(image, classes, [0, 1]) == 1.0
    assert zeroshot_accuracy(image, classes, [1, 0]) == 0.0
