"""The model side of `negenc eval`: load a CLIPModel, embed images once through the training cache,
embed texts in batches, and score captions either by cosine or with the split scorer.

Image embeddings go through `negation_encoder.image_cache.ImageEmbeddingCache` under
`<cache dir>/<cache_fingerprint>`, so they are cached per (model vision tower + preprocessing, image)
by the same rule as training (a folder written by training for the same model is reused as is),
several models can share one cache dir, and a changed model can never read stale rows. Crops are
images too: their key is `<path>#crop=x,y,w,h`. Under a launcher the processes fill the cache and
embed the texts together (`Encoder.cache_images`, `Encoder.embed_texts`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ..checkpoint.layout import tokenizer_source
from ..checkpoint.sources import check_clip_model
from ..devices import inference_dtype, resolve_device
from ..distributed import Processes
from ..encoding import encode_texts, image_size_problem
from ..errors import InputError
from ..image_cache import ImageEmbeddingCache, cache_fingerprint
from ..split_scorer import SplitScorer

CROP_MARK = "#crop="



def crop_key(image: str, box: tuple[float, float, float, float]) -> str:
    return f"{image}{CROP_MARK}{','.join(repr(float(v)) for v in box)}"


def image_key_size(key: str) -> tuple[int, int]:
    """(width, height) of the image a cache key stands for, reading the file's header only."""
    path, _, crop = key.partition(CROP_MARK)
    if crop:
        _, _, w, h = (float(v) for v in crop.split(","))
        return round(w), round(h)
    with Image.open(path) as im:
        return im.size


def check_image_sizes(keys, model: str) -> None:
    """Before any weights load: when the model's image processor passes sizes through (no resize, no
    crop), every image must already be the vision tower's size; the first that is not is one line."""
    from transformers import AutoConfig, AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(model)
        image_size = AutoConfig.from_pretrained(model).vision_config.image_size
    except (OSError, ValueError, AttributeError):
        return  # load_model reports a model it cannot load
    if image_size_problem(processor, image_size, (-1, -1)) is None:
        return
    for key in dict.fromkeys(keys):
        problem = image_size_problem(processor, image_size, image_key_size(key))
        if problem:
            raise InputError(f"image {key}: {problem}")


def load_image_key(key: str) -> Image.Image:
    """An RGB image for a cache key: a path, or a path plus an [x, y, w, h] crop (PIL box x, y, x+w, y+h)."""
    path, _, crop = key.partition(CROP_MARK)
    with Image.open(path) as im:
        image = im.convert("RGB")
    if crop:
        x, y, w, h = (float(v) for v in crop.split(","))
        image = image.crop((x, y, x + w, y + h))
    return image


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    image_processor: object
    source: str


def load_model(source: str) -> LoadedModel:
    """CLIPModel, CLIPTokenizer (`tokenizer/` subfolder when there is one) and the image processor of a
    local folder or Hub id; anything but a CLIPModel is refused, naming what it is (`checkpoint.sources`)."""
    from transformers import AutoImageProcessor, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    check_clip_model(source, "--model", " (a negation-encoder checkpoint folder is one)")
    local = Path(source).expanduser()
    where = str(local) if local.is_dir() else source
    try:
        model = CLIPModel.from_pretrained(where).eval()
    except (OSError, ValueError) as e:
        raise InputError(f"--model {source!r}: cannot load a CLIPModel ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    tok_path, tok_sub = tokenizer_source(where)
    tokenizer = CLIPTokenizer.from_pretrained(tok_path, subfolder=tok_sub) if tok_sub else CLIPTokenizer.from_pretrained(tok_path)
    try:
        processor = AutoImageProcessor.from_pretrained(where)
    except (OSError, ValueError, ImportError):
        processor = CLIPImageProcessor.from_pretrained(where)
    return LoadedModel(model, tokenizer, processor, where)


class Encoder:
    """Batched, cached embeddings and caption scores for one model (every benchmark goes through this).

    Used alone, it embeds what a benchmark asks for as it asks. `negenc eval` prepares it instead, so
    that launched processes share the work and still give one process's numbers: `plan_texts` runs
    the benchmarks once on zero embeddings to record every text they will ask for (through the same
    `paired` / `matrix` code, split scoring included), `cache_images` and `embed_texts` compute every
    image and text in the batches one process would form, shared round-robin over the processes, and
    from then on the encoder only reads: a text nobody planned is an error, not a differently
    batched embedding."""

    def __init__(self, loaded: LoadedModel, cache_dir: Path, scorer: SplitScorer | None = None, batch_size: int = 64,
                 device: str | torch.device | None = None, dtype: str = "auto", progress: bool = True):
        self.device = resolve_device(device) if not isinstance(device, torch.device) else device
        self.model = loaded.model.to(self.device)
        self.tokenizer = loaded.tokenizer
        self.processor = loaded.image_processor
        self.scorer = scorer  # None: plain cosines
        self.batch_size = batch_size
        self.progress = progress
        self.text_dtype = inference_dtype(self.device, dtype)
        self.fingerprint = cache_fingerprint(self.model, self.processor)
        self.cache = ImageEmbeddingCache(Path(cache_dir) / self.fingerprint)
        self.cache_counts = {"computed": 0, "cached": 0}
        self._text_rows: dict[str, torch.Tensor] = {}
        self._planning: list[str] | None = None  # texts asked for while planning
        self._prepared = False  # images cached and texts embedded for the whole run: read only

    @property
    def image_dtype(self) -> torch.dtype:
        """The training cache's precision rule (fp16 on CUDA, fp32 on CPU), so its rows are shareable."""
        return inference_dtype(self.device)

    @property
    def dim(self) -> int:
        return self.model.config.projection_dim

    def cache_images(self, keys: list[str], procs: Processes | None = None) -> None:
        """Embed every key not cached yet, shared over `procs` (each image once), and count them."""
        counts = self.cache.build(self.model, self.processor, keys, load_image_key, batch_size=self.batch_size,
                                  progress=self.progress, procs=procs)
        self.cache_counts["computed"] += counts["computed"]
        self.cache_counts["cached"] += counts["cached"]

    def images(self, keys: list[str]) -> torch.Tensor:
        """(N, D) normalised embeddings of image keys (paths or crop keys), computed once per model."""
        if self._planning is not None:
            return torch.zeros(len(keys), self.dim)
        if not self._prepared:
            self.cache_images(keys)
        return self.cache.load(keys)

    @contextlib.contextmanager
    def plan_texts(self):
        """Within this block every embedding is zeros and every text asked for is recorded (yielded list,
        in order of asking): run the benchmarks here to learn what `embed_texts` must embed."""
        self._planning = asked = []
        try:
            yield asked
        finally:
            self._planning = None

    def embed_texts(self, texts: list[str], procs: Processes | None = None) -> None:
        """Embed every distinct new text in `texts`: batches of `batch_size` in order of first appearance,
        round-robin over `procs`, every row gathered on every process. Afterwards the encoder is
        prepared: images come from the cache only and an unplanned text raises."""
        procs = procs or Processes()
        new = [t for t in dict.fromkeys(texts) if t not in self._text_rows]
        batches = [new[i: i + self.batch_size] for i in range(0, len(new), self.batch_size)]
        mine = {i: self._encode(batches[i]) for i in procs.share(range(len(batches)))}
        for rows in procs.gather(mine):
            for i, emb in rows.items():
                self._text_rows.update(zip(batches[i], emb, strict=True))
        self._prepared = True

    def _encode(self, texts: list[str]) -> torch.Tensor:
        """fp16/bf16 autocast on CUDA (`--dtype`); rows on the CPU."""
        half = self.device.type == "cuda" and self.text_dtype != torch.float32
        ctx = torch.autocast("cuda", dtype=self.text_dtype) if half else contextlib.nullcontext()
        with ctx:
            return encode_texts(self.model, self.tokenizer, texts, batch_size=self.batch_size)

    def texts(self, texts: list[str]) -> torch.Tensor:
        """(N, D) normalised text embeddings. Each distinct text is embedded once per model: a caption equal
        to its foil must score exactly equal (VALSE's strict rule makes that item wrong), which batches
        padded to different lengths would not guarantee bit for bit."""
        if self._planning is not None:
            self._planning.extend(texts)
            return torch.zeros(len(texts), self.dim)
        new = [t for t in dict.fromkeys(texts) if t not in self._text_rows]
        if new and self._prepared:
            raise RuntimeError(f"text {new[0]!r} was not planned (Encoder.plan_texts): a benchmark asked for a "
                               "text its planning run did not")
        if new:
            self._text_rows.update(zip(new, self._encode(new), strict=True))
        if not texts:
            return torch.empty(0, self.dim)
        return torch.stack([self._text_rows[t] for t in texts])

    @contextlib.contextmanager
    def reading(self, scorer: SplitScorer | None):
        """Within this block captions are read by `scorer` (None: plain cosines); the embeddings are shared."""
        before, self.scorer = self.scorer, scorer
        try:
            yield self
        finally:
            self.scorer = before

    def _split(self, texts: list[str]):
        return self.scorer.encode(texts, lambda t: self.texts(list(t)))

    def paired(self, image_emb: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """(N,) score of image i against caption i: a cosine, or the split score."""
        if self.scorer is not None:
            return self.scorer.paired(image_emb, self._split(texts))
        return (image_emb * self.texts(texts)).sum(-1)

    def matrix(self, texts: list[str], image_emb: torch.Tensor) -> torch.Tensor:
        """(N texts, M images) scores: cosines, or split scores."""
        if self.scorer is not None:
            return self.scorer.similarity(image_emb, self._split(texts)).T
        return self.texts(texts) @ image_emb.T
