"""The encoder checkpoint folder's layout, as named constants: the one place that knows it.

    config.json, model.safetensors           full CLIPModel (benchmarks, CLIPSeg, retrieval)
    text_encoder/                            CLIPTextModel (SD 1.x/2.x, SDXL and SD3 `text_encoder`, Flux)
    text_encoder_with_projection/            CLIPTextModelWithProjection (SDXL `text_encoder_2`, SD3, CLIPSeg)
    tokenizer/                               CLIPTokenizer files (also at the top, for CLIPProcessor)
    training_config.json, eval_results.json  what made it and how it scored (`negation_encoder.results`)
    split_scorer.json                        the fitted training-free split reader (`negation_encoder.split_scorer`)
    conversion.json                          where a converted checkpoint came from (`negenc convert`)
    README.md                                model card
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from ..split_scorer import SPLIT_SCORER_FILE

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TEXT_ENCODER = "text_encoder"
TEXT_ENCODER_WITH_PROJECTION = "text_encoder_with_projection"
TOKENIZER = "tokenizer"
TRAINING_CONFIG = "training_config.json"
EVAL_RESULTS = "eval_results.json"
SPLIT_SCORER = SPLIT_SCORER_FILE
MODEL_CARD = "README.md"
CONVERSION = "conversion.json"

# a diffusers pipeline's CLIP slot -> the subfolder holding the class it expects
ROLE_SUBFOLDER = {"text_encoder": TEXT_ENCODER, "text_encoder_2": TEXT_ENCODER_WITH_PROJECTION}


def is_encoder_folder(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / CONFIG).is_file() and (p / TEXT_ENCODER / CONFIG).is_file()


def check_encoder_folder(path: str | os.PathLike, flag: str = "--encoder") -> Path:
    """The folder, if it holds the layout above (a local path) with CLIP configs; one line naming what is
    missing, or what the folder is, otherwise."""
    p = Path(path)
    if not p.is_dir():
        raise InputError(f"{flag} {path}: not a folder (expected an encoder checkpoint folder as `negenc train` "
                         "writes under <out>/model)")
    if not is_encoder_folder(p):
        missing = [n for n in (CONFIG, f"{TEXT_ENCODER}/{CONFIG}") if not (p / n).is_file()]
        raise InputError(f"{flag} {path}: not an encoder checkpoint folder (missing {', '.join(missing)}; "
                         "`negenc train` writes one under <out>/model)")
    from .sources import check_encoder_checkpoint  # here: sources reads this module's names

    check_encoder_checkpoint(p, flag)  # the configs say CLIP, not only the file names
    return p


def tokenizer_source(folder: str | os.PathLike) -> tuple[str, str | None]:
    """(path, subfolder) to pass to `CLIPTokenizer.from_pretrained` for a local folder or Hub id."""
    p = Path(folder)
    return (str(p), TOKENIZER) if (p / TOKENIZER).is_dir() else (str(folder), None)
