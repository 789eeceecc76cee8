"""NegationRetriever: a gallery encoded once, the plain and split routes against the scorer written out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from negation_encoder.checkpoint.export import export_checkpoint
from negation_encoder.encoding import encode_images, encode_texts
from negation_encoder.errors import InputError
from negation_encoder.retrieval import NegationRetriever
from negation_encoder.split_scorer import SplitScorer
from negation_encoder.testing import tiny


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    tok = tiny.build_clip_tokenizer()
    out = tmp_path_factory.mktemp("ret") / "enc"
    export_checkpoint(tiny.build_clip_model(seed=4, tokenizer=tok), tok, tiny.build_clip_image_processor(32), out,
                      training_config={}, split_scorer=SplitScorer(0.6, 0.1))
    return out


def _images(n):
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]


def test_plain_and_split_routes_match_the_scorer_written_out(folder):
    r = NegationRetriever.from_pretrained(folder, device="cpu")
    assert r.scorer == SplitScorer(0.6, 0.1)  # read from split_scorer.json beside the checkpoint
    images = _images(5)
    r.add_images(images[:3], keys=["a", "b", "c"]).add_images(images[3:], keys=["d", "e"])
    queries = ["a dog with no hat", "a red car"]
    img = encode_images(r.model, r.image_processor, images)
    torch.testing.assert_close(r.gallery, img)
    plain = encode_texts(r.model, r.tokenizer, queries) @ img.T
    torch.testing.assert_close(r.scores(queries), plain)
    split = r.scores(queries, route="split")
    # by hand: "a dog with no hat" -> cos(img, "a dog") - 0.6 * (cos(img, "a photo of a hat") - 0.1)
    aff, concept = encode_texts(r.model, r.tokenizer, ["a dog", "a photo of a hat"])
    torch.testing.assert_close(split[0], img @ aff - 0.6 * (img @ concept - 0.1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(split[1], plain[1], atol=1e-5, rtol=1e-5)  # no negation: plain CLIP
    hits = r.search(queries, k=2, route="split")
    assert [k for k, _ in hits[0]] == [["a", "b", "c", "d", "e"][i] for i in split[0].topk(2).indices.tolist()]
    with pytest.raises(InputError, match="route must be one of plain, split"):
        r.scores(queries, route="stacked")


def test_split_route_needs_a_fitted_scorer(folder):
    tok = tiny.build_clip_tokenizer()
    r = NegationRetriever(tiny.build_clip_model(seed=0, tokenizer=tok), tok, tiny.build_clip_image_processor(32))
    r.add_images(_images(2))
    with pytest.raises(InputError, match="needs a SplitScorer"):
        r.scores(["no dog"], route="split")
    assert r.keys == [0, 1]
