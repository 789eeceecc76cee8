"""Where the benchmarks' files live under a user's `--data-root`, and how their image paths resolve.

The released files name images by absolute paths from the authors' machines
(`/data/healthy-ml/.../VOC2007/JPEGImages/004070.jpg`) or by paths relative to their checkout
(`data/coco/images/val2017/000000397133.jpg`). Neither exists on a user's disk, but the trailing
components do: `resolve_image` tries the longest suffix of the recorded path that exists under the
expected image folder, then shorter ones, down to the bare file name. Every loader uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

# (annotation file, image folder) per benchmark, relative to --data-root. Flags override each one.
DEFAULT_LAYOUT: dict[str, dict[str, str]] = {
    "valse": {"file": "valse/existence.json", "images": "valse/images"},
    "negrefcocog": {"file": "negrefcocog/NegRefCOCOg.json", "images": "coco/train2014"},
    "negbench-mcq-coco": {"file": "negbench/COCO_val_mcq_llama3.1_rephrased.csv", "images": "coco/val2017"},
    "negbench-mcq-voc": {"file": "negbench/VOC2007_mcq.csv", "images": "voc2007/JPEGImages"},
    "negbench-retrieval": {"file": "negbench/COCO_val_negated_retrieval_llama3.1_rephrased_affneg_true.csv",
                           "plain_file": "negbench/COCO_val_retrieval.csv", "images": "coco/val2017"},
    "coco-retrieval": {"file": "coco/dataset_coco.json", "images": "coco"},
    "zeroshot": {"file": "imagenet/classnames.txt", "images": "imagenet/val"},
}
BENCHMARKS = tuple(DEFAULT_LAYOUT)


@dataclass(frozen=True)
class BenchFiles:
    """The files one benchmark reads: its annotation file(s) and the folder its image paths resolve under."""

    bench: str
    file: Path
    images: Path
    plain_file: Path | None = None  # negbench-retrieval only: the plain COCO retrieval CSV scored beside it

    def all_files(self) -> list[Path]:
        return [self.file] + ([self.plain_file] if self.plain_file is not None else [])


def under_root(data_root: Path, path: str | Path) -> Path:
    """A flag value: absolute paths stay as given, relative ones are read under --data-root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else data_root / p


def bench_files(bench: str, data_root: str | Path, overrides: dict[str, str | None] | None = None) -> BenchFiles:
    """The default layout for `bench`, with any non-empty override (`file`, `plain_file`, `images`) applied."""
    root = Path(data_root).expanduser()
    layout = {**DEFAULT_LAYOUT[bench], **{k: v for k, v in (overrides or {}).items() if v}}
    plain = layout.get("plain_file")
    return BenchFiles(bench=bench, file=under_root(root, layout["file"]), images=under_root(root, layout["images"]),
                      plain_file=under_root(root, plain) if plain else None)


def path_parts(recorded: str) -> list[str]:
    """Components of a path as written in a file, whichever OS wrote it ('C:\\a\\b.jpg' or '/a/b.jpg')."""
    parts = PureWindowsPath(recorded).parts if "\\" in recorded else PurePosixPath(recorded).parts
    return [p for p in parts if p not in ("/", "\\", "", ".") and not p.endswith(":\\") and not p.endswith(":")]


def candidate_paths(recorded: str, folder: Path) -> list[Path]:
    """Every trailing suffix of `recorded` under `folder`, longest first (the order `resolve_image` tries)."""
    parts = path_parts(recorded)
    return [folder.joinpath(*parts[i:]) for i in range(len(parts)) if ".." not in parts[i:]]


def resolve_image(recorded: str, folder: Path) -> Path | None:
    """The file under `folder` named by the longest existing trailing suffix of `recorded`, else None."""
    for cand in candidate_paths(recorded, folder):
        if cand.is_file():
            return cand
    return None
