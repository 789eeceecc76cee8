"""Run CLIPSeg (original, or with a negation encoder swapped in) over a dataset; resumable.

Run folder: `run.json` (settings), `samples.jsonl` (one line per finished sample: its 2 x 50 confusion
histogram and IoU at 0.3), `metrics.json`, `summary.md`, `overlays.png` (best and worst samples).

Resume is exact: batches are fixed slices of the dataset order, so a batch recomputed after a kill
has the same composition (and padding) as in an uninterrupted run, only samples missing from
`samples.jsonl` are appended, and the metrics are rebuilt from the saved integer histograms in
dataset order.

Sharding is exact for the same reason: under `accelerate launch` / `torchrun` the processes take whole
fixed batches round-robin, log their samples to their own part files (`store.SampleLog`), and the main
process merges them into `samples.jsonl` (dataset order) and computes the metrics once; N processes
write what one process writes.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image

from negation_encoder.configs import Validated, at_least, collect, option
from negation_encoder.devices import DTYPES, resolve_dtype
from negation_encoder.distributed import processes
from negation_encoder.errors import IncompatibleModelError, InputError
from negation_encoder.runio import RunFolder, atomic_write_bytes, atomic_write_json, atomic_write_text
from negation_encoder.stats import paired_bootstrap

from .datasets import DatasetConfig, SegDataset, SegSample, load_dataset
from .metrics import (
    FixedIntervalMetrics,
    confusion_histograms,
    histogram_ready,
    histograms_from_probabilities,
    probabilities_at_mask_size,
    sample_iou,
)
from .report import comparison_markdown, metrics_markdown, overlay_png
from .store import ARM_FILES, RUN_FILE, SampleLog


@dataclass
class SegEvalConfig(Validated):
    """One evaluation: which data, which CLIPSeg, which encoder (None = the original text tower)."""

    dataset: DatasetConfig = option(cli=False)
    model: str = option("CIDAS/clipseg-rd64-refined", "CLIPSeg folder or Hub id")
    encoder: str | None = option(None, "negation encoder folder (a CLIPModel) to swap into CLIPSeg; omit to run the "
                                 "original CLIPSeg (compare needs it)")
    out: str = option("seg_eval", "output folder (samples.jsonl, metrics.json, summary.md, overlays.png)")
    command: str = option("eval", cli=False, choices=("eval", "compare"))
    batch_size: int = option(8, "samples per forward pass")
    device: str = option("auto", "auto (CUDA if available), cpu, cuda, cuda:N")
    dtype: str = option("auto", "auto: fp16 on CUDA, fp32 on CPU", choices=DTYPES)
    route: str = option("plain", "plain: the text as is; split: the affirmative part minus the negated concepts "
                        "(the training-free route, integrations.segment), weight from --split-route or the model "
                        "folder's negation_split_route.json", choices=("plain", "split"))
    split_route: str | None = option(None, "a folder holding negation_split_route.json (default: the model's)")
    resume: bool = option(False, "continue a killed run in --out without recomputing finished samples")
    overwrite: bool = option(False, "replace the results in --out (other files there are left alone)")
    seed: int = option(0, "seed for torch and the bootstrap")
    progress: bool = option(True, cli=False)
    overlays: int = option(4, "tiles in each of the best and worst rows of overlays.png")
    resamples: int = option(1000, "bootstrap resamples for the paired interval (compare)")

    def problems(self) -> list[str]:
        p = collect(at_least(self, "batch_size", 1), at_least(self, "resamples", 1), at_least(self, "overlays", 0))
        if self.command == "compare" and not self.encoder:
            p.append("encoder is required for compare (the swapped arm)")
        if self.resume and self.overwrite:
            p.append("resume and overwrite contradict each other; pass one")
        if not isinstance(self.dataset, DatasetConfig):
            p.append(f"dataset must be a DatasetConfig, got {type(self.dataset).__name__}")
        return p


@dataclass
class RunResult:
    out: Path
    metrics: dict
    computed: int  # samples run through the model in this call
    reused: int  # samples read back from an earlier, interrupted call
    sample_ious: dict[str, float] = field(default_factory=dict)


def check_config(cfg: SegEvalConfig) -> tuple[torch.device, torch.dtype]:
    """The device and dtype this machine can honour (the values themselves were checked by the config);
    under a launcher, `auto` / `cuda` is this process's own GPU."""
    device = processes().device(cfg.device)
    return device, resolve_dtype(device, cfg.dtype)


def check_sources(cfg: SegEvalConfig) -> None:
    """The CLIPSeg and the encoder are what their flags say, read from their configs before anything loads:
    a BERT or T5 folder as --encoder is refused here, never run as a CLIP tower with random weights."""
    from negation_encoder.checkpoint.sources import check_clipseg, text_tower

    check_clipseg(cfg.model, "--model")
    if cfg.encoder:
        text_tower(cfg.encoder, "clipseg", "--encoder")


def load_clipseg(model: str):
    """`CLIPSegForImageSegmentation` + `CLIPSegProcessor` from a folder or Hub id (on CPU, fp32)."""
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    from negation_encoder.checkpoint.sources import check_clipseg

    check_clipseg(model, "--model")
    try:
        seg = CLIPSegForImageSegmentation.from_pretrained(model).eval()
        processor = CLIPSegProcessor.from_pretrained(model)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"--model {model}: cannot load CLIPSeg and its processor ({first})") from None
    return seg, processor


def swapped_copy(seg, encoder: str, model: str):
    """A copy of `seg` with the text tower (and projection) of `encoder`: a CLIPModel,
    CLIPTextModelWithProjection or negation-encoder checkpoint (checked before any compute)."""
    from integrations.clipseg import load_clipseg_text_encoder, swap_clipseg_text_encoder

    try:
        clip = load_clipseg_text_encoder(encoder, "--encoder")
    except InputError:
        raise
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"--encoder {encoder}: cannot load its CLIP text tower ({first})") from None
    out = copy.deepcopy(seg)
    try:
        swap_clipseg_text_encoder(out, clip)
    except IncompatibleModelError as e:
        raise IncompatibleModelError(f"--encoder {encoder} does not fit CLIPSeg {model}: {e}") from None
    return out


def _fingerprint(cfg: SegEvalConfig, arm: str, dtype: torch.dtype) -> dict:
    d = asdict(cfg.dataset)
    d["cues"] = list(d["cues"])
    return {"arm": arm, "model": cfg.model, "encoder": cfg.encoder if arm.startswith("swapped") else None,
            "batch_size": cfg.batch_size, "dtype": str(dtype), "dataset": d, "route": cfg.route,
            "split_route": cfg.split_route}


@torch.no_grad()
def _predict(seg, processor, samples: list[SegSample], device, dtype) -> torch.Tensor:
    images = []
    for s in samples:
        try:
            with Image.open(s.image) as im:
                images.append(im.convert("RGB"))
        except OSError as e:
            raise InputError(f"{s.image}: cannot read image for sample {s.id} ({e})") from None
    max_len = getattr(processor.tokenizer, "model_max_length", 77)
    max_len = min(max_len, seg.config.text_config.max_position_embeddings)
    enc = processor(text=[s.text for s in samples], images=images, padding=True, truncation=True,
                    max_length=max_len, return_tensors="pt")
    enc = {k: (v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)) for k, v in enc.items()}
    logits = seg(**enc).logits
    return logits.reshape(len(samples), *logits.shape[-2:]).float().cpu()


def _split_probabilities(seg, processor, samples: list[SegSample], route) -> torch.Tensor:
    from integrations.clipseg import segment

    images = []
    for s in samples:
        with Image.open(s.image) as im:
            images.append(im.convert("RGB"))
    return segment(seg, processor, images, [s.text for s in samples], route="split", split_route=route)


def load_split_route(cfg: SegEvalConfig):
    """The fitted split route of `cfg` (checked before any compute), or None for the plain route."""
    from integrations.clipseg import SplitRoute

    if cfg.route != "split":
        return None
    folder = cfg.split_route or cfg.model
    try:
        return SplitRoute.load(folder)
    except (FileNotFoundError, TypeError, ValueError) as e:
        raise InputError(f"--route split: {e}") from None


def run_arm(seg, processor, data: SegDataset, cfg: SegEvalConfig, folder: Path, arm: str,
            device: torch.device, dtype: torch.dtype, split_route=None) -> RunResult:
    """Evaluate one model over `data` into `folder` (resumable); writes metrics.json, summary.md, overlays.png.
    With `cfg.route == "split"` the model reads each text through the split route (`split_route`).

    Under a launcher the fixed batches that still hold unfinished samples go round-robin to the
    processes (each batch computed whole, as one process computes it), each process logs its samples
    to its own part, and the main process merges `samples.jsonl`, computes the metrics once from the
    histograms in dataset order and writes the reports while the others wait. Every process returns
    the same result."""
    from tqdm.auto import tqdm

    if cfg.route == "split" and split_route is None:
        split_route = load_split_route(cfg)
    procs = processes()
    fingerprint = _fingerprint(cfg, arm, dtype)
    run_folder = RunFolder(folder, ARM_FILES, RUN_FILE)
    with contextlib.ExitStack() as held:
        def lock_and_prepare() -> None:  # the main process holds the folder for the whole run
            held.enter_context(run_folder.lock())
            run_folder.prepare(cfg.resume, cfg.overwrite, fingerprint)

        procs.on_main(lock_and_prepare)
        log = SampleLog(folder, fingerprint, procs)
        procs.wait()  # every process has read what is finished before any appends: all form the same batch list
        torch.manual_seed(cfg.seed)
        seg = seg.to(device=device, dtype=dtype)
        start, new = time.perf_counter(), []
        bs = cfg.batch_size
        batches = [data.samples[i: i + bs] for i in range(0, len(data.samples), bs)]
        todo = [b for b in batches if any(s.id not in log.records for s in b)]
        quiet = not cfg.progress or not procs.is_main
        for batch in tqdm(procs.share(todo), desc=f"seg {arm}", unit="batch", disable=quiet):
            masks = [torch.from_numpy(s.load_mask()) for s in batch]
            if cfg.route == "split":
                hist = histograms_from_probabilities(_split_probabilities(seg, processor, batch, split_route), masks)
            else:
                logits = _predict(seg, processor, batch, device, dtype)  # the whole fixed batch: same padding as ever
                hist = confusion_histograms(logits, masks)
            ious = sample_iou(hist, 0.3)
            records = [{"id": s.id, "text": s.text, "hist": hist[i].tolist(), "iou_0.3": float(ious[i]),
                        "gt_pixels": int(hist[i, 1].sum())} for i, s in enumerate(batch) if s.id not in log.records]
            log.append(records)
            new += records
        gathered = [r for recs in procs.gather(new) for r in recs]
        log.add(gathered)
        computed = len(gathered)
        metric = FixedIntervalMetrics(per_sample_classes=True)
        for s in data.samples:  # dataset order, whatever order and process the lines were written in
            metric.update_histograms(torch.tensor(log.records[s.id]["hist"]))
        metrics = metric.compute()
        ious = {s.id: float(log.records[s.id]["iou_0.3"]) for s in data.samples}
        info = {"arm": arm, "route": cfg.route, "dataset": data.name, "model": cfg.model,
                "encoder": cfg.encoder if arm.startswith("swapped") else None,
                "dtype": str(dtype).replace("torch.", ""), "device": device.type, "computed": computed,
                "seconds": round(time.perf_counter() - start, 2), **data.counts}

        def write() -> None:
            log.merge([s.id for s in data.samples])
            atomic_write_json(folder / "metrics.json", {**metrics, **{f"info_{k}": v for k, v in info.items()}})
            title = f"CLIPSeg ({arm}) on {data.name}"
            atomic_write_text(folder / "summary.md", metrics_markdown(title, metrics, info))
            _write_overlays(seg, processor, data, ious, cfg.overlays, folder, device, dtype, split_route)

        procs.on_main(write)
        seg.to("cpu")
        return RunResult(folder, metrics, computed, len(data.samples) - computed, ious)


def _write_overlays(seg, processor, data: SegDataset, ious: dict[str, float], k: int, folder: Path,
                    device, dtype, split_route=None) -> None:
    if k <= 0 or not data.samples:
        return
    order = sorted(range(len(data.samples)), key=lambda i: (ious[data.samples[i].id], i))
    worst, best = order[:k], order[::-1][:k]
    rows = []
    for label, picks in (("best", best), ("worst", worst)):
        samples = [data.samples[i] for i in picks]
        if split_route is not None:
            preds = _split_probabilities(seg, processor, samples, split_route)
        else:
            preds = _predict(seg, processor, samples, device, dtype)
        tiles = []
        for s, pred in zip(samples, preds, strict=True):
            mask = s.load_mask()
            prob = (histogram_ready(pred, mask.shape) if split_route is not None
                    else probabilities_at_mask_size(pred, mask.shape)).numpy()
            with Image.open(s.image) as im:
                tiles.append((im.convert("RGB"), mask, prob, f"{ious[s.id]:.2f} {s.text}"))
        rows.append((label, tiles))
    atomic_write_bytes(folder / "overlays.png", overlay_png(rows))


def evaluate(cfg: SegEvalConfig) -> RunResult:
    """`negenc seg eval`: one CLIPSeg (swapped when `cfg.encoder` is set) over one dataset."""
    device, dtype = check_config(cfg)
    check_sources(cfg)
    data = load_dataset(cfg.dataset)
    if not data.samples:
        raise InputError("the dataset selection is empty (check --split, --negation-only/--cues and --limit)")
    route = load_split_route(cfg)
    seg, processor = load_clipseg(cfg.model)
    arm = "original"
    if cfg.encoder:
        seg, arm = swapped_copy(seg, cfg.encoder, cfg.model), "swapped"
    if route is not None:
        arm = "split" if arm == "original" else "swapped+split"
    return run_arm(seg, processor, data, cfg, Path(cfg.out), arm, device, dtype, route)


@dataclass
class CompareResult:
    original: RunResult
    swapped: RunResult
    comparison: dict


def compare(cfg: SegEvalConfig) -> CompareResult:
    """`negenc seg compare`: the original and the swapped CLIPSeg on the same samples, paired."""
    if not cfg.encoder:
        raise InputError("--encoder: compare needs a negation encoder folder")
    device, dtype = check_config(cfg)
    check_sources(cfg)
    procs = processes()
    procs.on_main(lambda: RunFolder(cfg.out, ("original", "swapped", "comparison.json", "comparison.md"))
                  .check(cfg.resume, cfg.overwrite))
    data = load_dataset(cfg.dataset)
    if not data.samples:
        raise InputError("the dataset selection is empty (check --split, --negation-only/--cues and --limit)")
    route = load_split_route(cfg)
    seg, processor = load_clipseg(cfg.model)
    swapped = swapped_copy(seg, cfg.encoder, cfg.model)  # fails here, before any compute
    out = Path(cfg.out)
    a = run_arm(seg, processor, data, cfg, out / "original", "original", device, dtype, route)
    b = run_arm(swapped, processor, data, cfg, out / "swapped", "swapped", device, dtype, route)
    ids = [s.id for s in data.samples]
    diff = paired_bootstrap([a.sample_ious[i] for i in ids], [b.sample_ious[i] for i in ids],
                            resamples=cfg.resamples, seed=cfg.seed)
    comparison = {f"original_{k}": v for k, v in a.metrics.items()}
    comparison.update({f"swapped_{k}": v for k, v in b.metrics.items()})
    comparison.update({"paired_iou_0.3_mean_diff": diff.mean, "paired_iou_0.3_ci_low": diff.low,
                       "paired_iou_0.3_ci_high": diff.high, "paired_n": diff.n,
                       "bootstrap_resamples": diff.resamples, "seed": diff.seed,
                       "dataset": data.name, "model": cfg.model, "encoder": cfg.encoder})

    def write() -> None:
        atomic_write_json(out / "comparison.json", comparison)
        names = ("original", "swapped")
        atomic_write_text(out / "comparison.md", comparison_markdown(a.metrics, b.metrics, diff, names))

    procs.on_main(write)
    return CompareResult(a, b, comparison)


def per_sample_ious(folder: Path) -> dict[str, float]:
    """IoU at 0.3 of every sample a run folder has finished (for ad-hoc analysis)."""
    return {k: float(v["iou_0.3"]) for k, v in SampleLog(Path(folder)).records.items()}


def run(cfg: SegEvalConfig) -> RunResult | CompareResult:
    """The one entry (`negenc seg eval` / `negenc seg compare`): `cfg.command` picks which."""
    return compare(cfg) if cfg.command == "compare" else evaluate(cfg)


__all__ = ["SegEvalConfig", "RunResult", "CompareResult", "evaluate", "compare", "run", "run_arm", "load_clipseg",
           "swapped_copy", "per_sample_ious"]
