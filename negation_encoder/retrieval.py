"""Text-to-image retrieval with negation, for users: encode a gallery once, query it by route.

Routes: `plain` (one cosine per image, what CLIP does), `split` (the training-free split reader:
affirmative part minus the negated concepts, `negation_encoder.split_scorer`). On a fine-tuned negation
encoder `split` is the stacked route. `NegationRetriever.from_pretrained(folder)` picks up a split
reader fitted on training data and saved beside the checkpoint (`split_scorer.json`: the testbed's demo
writes one; after `negenc train`, fit one with `split_scorer.fit_split_weight_on_records` on training
records and `SplitScorer.save` it), so retrieval reads a negation exactly as `negenc eval
--split-scoring` does. Without the file the split route needs `scorer=`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from .devices import resolve_device
from .encoding import encode_images, encode_texts
from .errors import InputError
from .split_scorer import SplitScorer

ROUTES = ("plain", "split")


class NegationRetriever:
    """A gallery of image embeddings and the text tower that queries it."""

    def __init__(self, model, tokenizer, image_processor, scorer: SplitScorer | None = None, batch_size: int = 64,
                 device: str | None = None):
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.tokenizer, self.image_processor, self.scorer = tokenizer, image_processor, scorer
        self.batch_size = batch_size
        self.keys: list = []
        self.gallery = torch.empty(0, model.config.projection_dim)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, **kwargs) -> NegationRetriever:
        """A CLIPModel folder (or Hub id) with its tokenizer and image processor, and its split reader if saved."""
        from transformers import AutoImageProcessor, CLIPModel, CLIPTokenizer

        from .checkpoint.layout import tokenizer_source

        path, sub = tokenizer_source(folder)
        tokenizer = CLIPTokenizer.from_pretrained(path, subfolder=sub) if sub else CLIPTokenizer.from_pretrained(path)
        scorer = SplitScorer.load(folder) if Path(folder).is_dir() and SplitScorer.exists(folder) else None
        return cls(CLIPModel.from_pretrained(folder), tokenizer, AutoImageProcessor.from_pretrained(folder), scorer,
                   **kwargs)

    def add_images(self, images: Sequence, keys: Sequence | None = None) -> NegationRetriever:
        """Embed images (PIL or arrays) once and append them to the gallery; `keys` name them (default: index)."""
        keys = list(keys) if keys is not None else list(range(len(self.keys), len(self.keys) + len(images)))
        if len(keys) != len(images):
            raise InputError(f"{len(images)} images but {len(keys)} keys")
        emb = encode_images(self.model, self.image_processor, list(images), batch_size=self.batch_size)
        self.gallery = torch.cat([self.gallery, emb])
        self.keys += keys
        return self

    def _encode(self, texts: list[str]) -> torch.Tensor:
        return encode_texts(self.model, self.tokenizer, texts, batch_size=self.batch_size)

    def scores(self, queries: Sequence[str], route: str = "plain") -> torch.Tensor:
        """(queries, gallery) scores: cosines, or split scores."""
        if route not in ROUTES:
            raise InputError(f"route must be one of {', '.join(ROUTES)}, got {route!r}")
        queries = list(queries)
        if route == "plain":
            return self._encode(queries) @ self.gallery.T
        if self.scorer is None:
            raise InputError("the split route needs a SplitScorer (fitted on training data): pass scorer=, or load a "
                             "folder that holds split_scorer.json")
        return self.scorer.similarity(self.gallery, self.scorer.encode(queries, self._encode)).T

    def search(self, queries: Sequence[str], k: int = 5, route: str = "plain") -> list[list[tuple[object, float]]]:
        """The top-k gallery keys (with their scores) for each query, best first."""
        s = self.scores(queries, route)
        top = s.topk(min(k, s.shape[1]), dim=1)
        return [[(self.keys[j], float(v)) for v, j in zip(vals.tolist(), idx.tolist(), strict=True)]
                for vals, idx in zip(top.values, top.indices, strict=True)]
