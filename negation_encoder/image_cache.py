"""Cached image embeddings, shared by the trainer and the benchmarks: a frozen vision tower
embeds each image once.

Embeddings are stored as safetensors shards with an index from image key to (shard, row), under a
fingerprint of the vision weights, the visual projection and the image preprocessing. A cache whose
fingerprint differs (another base model, other preprocessing) is detected and rebuilt, never reused.
Launched processes fill one cache together, each image once (`ImageEmbeddingCache.build(procs=...)`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .devices import inference_dtype
from .distributed import Processes
from .encoding import encode_images
from .runio import writing

META = "cache_meta.json"


def cache_fingerprint(model, image_processor) -> str:
    """Hash of everything that determines an image embedding: vision weights + projection + preprocessing."""
    h = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        if name.startswith(("vision_model.", "visual_projection.")):
            t = state[name].detach().to("cpu").contiguous()
            h.update(name.encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    h.update(json.dumps(image_processor.to_dict(), sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


class ImageEmbeddingCache:
    """Safetensors shards of projected, normalised image embeddings keyed by image key."""

    def __init__(self, root: str | os.PathLike, shard_size: int = 50_000):
        self.root = Path(root)
        self.shard_size = shard_size

    def _meta(self) -> dict | None:
        path = self.root / META
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None

    def status(self, fingerprint: str) -> str:
        meta = self._meta()
        if meta is None:
            return "missing"
        return "fresh" if meta.get("fingerprint") == fingerprint else "stale"

    def _reset_if_stale(self, fingerprint: str) -> bool:
        """Remove a cache made for other weights or preprocessing; create the folder. True if removed."""
        stale = self.status(fingerprint) == "stale"
        if stale:
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        return stale

    def build(self, model, image_processor, keys: Sequence[str], load_image: Callable[[str], object],
              batch_size: int = 256, progress: bool = True, procs: Processes | None = None) -> dict[str, int]:
        """Embed every key not cached yet (rebuilding from scratch if stale). Returns counts.

        `procs` (the launched processes, all calling this with the same keys) fills the cache in
        parallel, each image once: the batches one process would form (chunks of `shard_size`,
        `batch_size` images each) go round-robin to the processes, each writes its rows of a chunk
        as its own shard, and the main process alone indexes them in `cache_meta.json` after every
        chunk, while the others wait. A batch's embeddings are the same whichever process computes
        it, so the cache holds the rows a one-process build would."""
        procs = procs or Processes()
        fingerprint = cache_fingerprint(model, image_processor)
        rebuilt = procs.on_main(lambda: self._reset_if_stale(fingerprint))
        meta = self._meta() or {"fingerprint": fingerprint, "index": {}, "shards": []}
        index: dict[str, list[int]] = meta["index"]
        todo = list(dict.fromkeys(k for k in keys if k not in index))
        device = next(model.parameters()).device
        dtype = inference_dtype(device)
        was_dtype = next(model.parameters()).dtype
        if todo and dtype != was_dtype:
            model.to(dtype)
        for start in range(0, len(todo), self.shard_size):
            chunk = todo[start: start + self.shard_size]
            batches = [chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size)]
            mine = procs.share(batches)
            bar = tqdm(total=sum(map(len, mine)), desc="cache image embeddings", unit="img",
                       disable=not progress or not procs.is_main)
            embs = []
            for batch in mine:
                embs.append(encode_images(model, image_processor, [load_image(k) for k in batch],
                                          batch_size=batch_size, dtype=dtype))
                bar.update(len(batch))
            bar.close()
            shard = None
            if mine:  # shard names: one per process of this chunk, after the shards indexed so far
                shard = f"shard-{len(meta['shards']) + procs.rank:05d}.safetensors"
                tmp = self.root / (shard + ".tmp")
                with writing(tmp):
                    save_file({"embeddings": torch.cat(embs).contiguous()}, str(tmp))
                    os.replace(tmp, self.root / shard)
            written = procs.gather((shard, [k for batch in mine for k in batch]))
            for name, rows in written:
                if name is None:
                    continue
                for row, k in enumerate(rows):
                    index[k] = [len(meta["shards"]), row]
                meta["shards"].append(name)
            procs.on_main(lambda: self._write_meta(meta))  # the index only ever points at complete shards
        if todo and dtype != was_dtype:
            model.to(was_dtype)
        return {"computed": len(todo), "cached": len(set(keys)) - len(todo), "rebuilt_stale": int(rebuilt)}

    def _write_meta(self, meta: dict) -> None:
        tmp_meta = self.root / (META + ".tmp")
        with writing(tmp_meta):
            tmp_meta.write_text(json.dumps(meta))
            os.replace(tmp_meta, self.root / META)

    def load(self, keys: Sequence[str]) -> torch.Tensor:
        """(len(keys), D) float32 embeddings, in the order of `keys`."""
        meta = self._meta()
        if meta is None:
            raise FileNotFoundError(f"{self.root}: no image-embedding cache (run build first)")
        missing = [k for k in keys if k not in meta["index"]]
        if missing:
            raise KeyError(f"{self.root}: {len(missing)} image(s) not cached, e.g. {missing[0]!r}")
        shards = [load_file(str(self.root / s))["embeddings"] for s in meta["shards"]]
        rows = [shards[s][r] for s, r in (meta["index"][k] for k in keys)]
        return torch.stack(rows).float() if rows else torch.empty(0)
