"""The fast route of a step (length buckets, one tower call, frozen outputs cached) computes what the plain
route (one padded batch per view, nothing cached) computes: the same loss and the same gradients."""

from __future__ import annotations

import pytest
import torch

from negation_encoder.training import TrainConfig
from negation_encoder.training.step import compute_loss, length_buckets

from ._numerics import assert_close_in_norm
from ._tiny_world import make_segmentation_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_segmentation_world(tmp_path_factory.mktemp("step"))


def test_length_buckets_minimise_padded_tokens_plus_a_cost_per_bucket():
    assert length_buckets([5, 5, 5, 5]) == [5]
    # two far-apart groups of many rows: two buckets beat one (512 tokens per extra bucket)
    lengths = [4] * 200 + [70] * 20
    assert length_buckets(lengths) == [4, 70]
    one = 220 * 70 + 512
    two = 200 * 4 + 20 * 70 + 2 * 512
    assert two < one
    # a bucket is never narrower than a row it takes
    got = length_buckets([3, 9, 9, 10, 40, 41, 77] * 30)
    assert got[-1] == 77 and got == sorted(got)


def _state(world, tmp_path, cache_mb, frozen_dtype="float32"):
    from accelerate import Accelerator

    from negation_encoder.image_cache import ImageEmbeddingCache
    from negation_encoder.training.checkpoints import RunDir
    from negation_encoder.training.checks import check_inputs
    from negation_encoder.training.setup import setup

    cfg = TrainConfig.from_dict({
        "model": {"base": world["base"]}, "data": {"files": [world["data"]], "images": world["images"],
                                                   "frozen_cache_mb": cache_mb},
        "optim": {"steps": 1, "batch_size": 12, "lr": 1e-3, "warmup_steps": 0, "frozen_dtype": frozen_dtype},
        "pipeline": {"length": 16}, "run": {"out": str(tmp_path / f"run{cache_mb}"), "save_every": 1},
        "objective": {"infonce": 0.3, "mcq": 2.0, "preserve": 1.0, "preserve_embeds": 1.0,
                      "omit_states": {"weight": 3.0, "types": ["absence"]}, "preserve_states": 3.0,
                      "seg_loss": {"weight": 1.0, "model": world["clipseg"], "data": [world["refs"]],
                                   "batch_size": 6, "choice": 0.5}}})
    acc, run = Accelerator(cpu=True), RunDir(cfg.run.out)
    return setup(cfg, check_inputs(cfg, acc, run, False, False, None), acc, run,
                 ImageEmbeddingCache(tmp_path / "cache"), progress=False)


def _loss_and_grads(state, batch, reference):
    state.optimizer.zero_grad(set_to_none=True)
    loss, parts = compute_loss(state, batch, reference=reference)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in state.tower.named_parameters() if p.grad is not None}
    state.optimizer.zero_grad(set_to_none=True)
    return loss.detach(), {k: v.detach() for k, v in parts.items()}, grads


def _moved(state):
    """Move the tower off the base the same way in every state, so every preservation term is non-zero."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in state.params:
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return state


def test_fast_route_equals_the_reference_route_in_loss_and_gradients(world, tmp_path):
    """The fast route with the frozen outputs kept before the first step, against the plain route that
    recomputes them every step, on the same weights and batches."""
    fast = _moved(_state(world, tmp_path, cache_mb=64))
    ref = _moved(_state(world, tmp_path / "ref", cache_mb=0))
    assert fast.cache.kept and ref.cache is None
    for step in range(3):
        ref_loss, ref_parts, ref_grads = _loss_and_grads(ref, ref.batch(step, 0), reference=True)
        fast_loss, fast_parts, fast_grads = _loss_and_grads(fast, fast.batch(step, 0), reference=False)
        assert fast_loss.item() == pytest.approx(ref_loss.item(), rel=1e-5), (step, fast_loss, ref_loss)
        for k in ref_parts:
            assert fast_parts[k].item() == pytest.approx(ref_parts[k].item(), rel=1e-5, abs=1e-7), (step, k)
        assert set(fast_grads) == set(ref_grads)
        for n, g in ref_grads.items():
            # batched sums differ with the batch's shape and the thread count: compare each gradient in norm
            assert_close_in_norm(fast_grads[n], g, rel=1e-4, floor=1e-6, what=f"step {step}: {n}")


def test_the_routes_agree_with_and_without_kept_outputs(world, tmp_path):
    """Each route alone: the plain route with kept outputs and the fast route without them give the same."""
    kept = _moved(_state(world, tmp_path, cache_mb=64))
    none = _moved(_state(world, tmp_path / "none", cache_mb=0))
    a, _, _ = _loss_and_grads(kept, kept.batch(0, 0), reference=True)
    b, _, _ = _loss_and_grads(none, none.batch(0, 0), reference=False)
    assert b.item() == pytest.approx(a.item(), rel=1e-5)


def test_frozen_models_in_bfloat16_hand_on_float32_close_to_the_float32_run(world, tmp_path):
    """optim.frozen_dtype runs the base tower's copy and CLIPSeg in bfloat16: their outputs reach the terms
    in float32, the trained tower keeps float32, and the loss and gradient stay near the float32 run's
    (bfloat16 keeps 8 bits of mantissa: agreement to a few percent, not to float32's rounding)."""
    full = _moved(_state(world, tmp_path, cache_mb=0))
    half = _moved(_state(world, tmp_path / "bf16", cache_mb=0, frozen_dtype="bfloat16"))
    assert next(half.base_text.parameters()).dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in half.params)
    a, parts_a, grads_a = _loss_and_grads(full, full.batch(0, 0), reference=False)
    b, parts_b, grads_b = _loss_and_grads(half, half.batch(0, 0), reference=False)
    assert b.dtype == torch.float32 and torch.isfinite(b)
    assert b.item() == pytest.approx(a.item(), rel=0.05)
    assert set(parts_a) == set(parts_b)
    va = torch.cat([g.flatten() for g in grads_a.values()])
    vb = torch.cat([grads_b[n].flatten() for n in grads_a])
    assert torch.nn.functional.cosine_similarity(va, vb, dim=0) > 0.98
