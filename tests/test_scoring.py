"""The benchmark scoring rules on hand-made cases."""

import math

import pytest
import torch

from negation_encoder.eval import (
    existence_accuracy,
    group_top1_accuracy,
    mcq_scores,
    pairwise_accuracy,
    recall_at_k,
    recall_at_k_any,
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


def test_recall_at_k_any_counts_any_valid_image_in_the_top_k():
    sims = torch.tensor([[0.9, 0.8, 0.7, 0.1],   # best valid (col 2) ranks 3rd
                         [0.9, 0.8, 0.7, 0.1],   # only col 3 valid: ranks 4th
                         [0.5, 0.5, 0.1, 0.0],   # tie with an invalid image counts for the query
                         [0.9, 0.8, 0.7, 0.6]])  # nothing valid: a miss
    valid = torch.tensor([[False, False, True, True],
                          [False, False, False, True],
                          [True, False, False, False],
                          [False, False, False, False]])
    assert recall_at_k_any(sims, valid, 1) == pytest.approx(1 / 4)
    assert recall_at_k_any(sims, valid, 3) == pytest.approx(2 / 4)
    assert recall_at_k_any(sims, valid, 4) == pytest.approx(3 / 4)
    # with one valid image per query it is plain Recall@k
    text, image = torch.eye(3), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    target = [1, 0, 2]
    one_hot = torch.zeros(3, 3, dtype=torch.bool)
    one_hot[torch.arange(3), torch.tensor(target)] = True
    assert recall_at_k_any(text @ image.T, one_hot, 1) == recall_at_k(text, image, target, ks=(1,))[1] == 1.0
    with pytest.raises(ValueError, match="one shape"):
        recall_at_k_any(sims, valid[:2], 1)


def test_group_top1_is_strict():
    sims = torch.tensor([[0.9, 0.5, 0.1], [0.5, 0.5, 0.1], [0.2, 0.9, 0.1], [0.3, 0.9, 0.8]])
    assert group_top1_accuracy(sims, [0, 0, 0, 2]) == pytest.approx(1 / 4)  # the tie in row 2 is a miss
    assert group_top1_accuracy(sims, [0, 1, 1, 1]) == pytest.approx(3 / 4)
    assert math.isnan(group_top1_accuracy(torch.zeros(0, 3), []))
