"""The CLIPSeg object-choice ceiling (negation_testbed.experiments.diagnose_seg) against seg-compare's own measure."""

from __future__ import annotations

import pytest

from negation_testbed.experiments.diagnose_seg import SegCeilingConfig, seg_ceiling


def test_ceiling_references_match_seg_compare_and_the_fit_starts_at_the_kind(tmp_path):
    """Two routes to each reference: the named-colour figure equals `seg_compare.target_wins` on the control set
    seg-compare writes for the same seed; an unfitted free embedding (0 steps) is exactly the text tower's
    embedding of "the {kind}" (the free vector sits before the frozen final norm and projection)."""
    from eval_seg.runner import load_clipseg
    from negation_testbed.drop_in.seg_compare import target_wins
    from negation_testbed.instruments.segmenter import SEG_DIR
    from negation_testbed.world.referring import write_referring_set

    cfg = SegCeilingConfig(train_samples=16, eval_samples=48, steps=0)
    res = seg_ceiling(cfg)
    assert res["free embedding (ceiling)"] == res["kind only"]
    seg, processor = load_clipseg(str(SEG_DIR))
    wins = target_wins(seg, processor, write_referring_set(tmp_path / "control", 48, cfg.eval_seed, negated=False))
    assert res["named colour"] == pytest.approx(sum(wins) / len(wins))
    fitted = seg_ceiling(SegCeilingConfig(train_samples=64, eval_samples=16, steps=12, batch_size=16))
    assert fitted["fit_loss"]["last"] < fitted["fit_loss"]["first"]


def test_ceiling_refuses_the_evaluated_draw():
    with pytest.raises(ValueError, match="eval_seed 0"):
        SegCeilingConfig(eval_seed=0)
