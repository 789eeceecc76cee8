"""`--no-progress`: silence our tqdm bars and the libraries' own (transformers, huggingface_hub)."""

from __future__ import annotations

import os


def silence_progress() -> None:
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # child processes (accelerate, torchrun) too
    disable_progress_bars()
    hf_logging.disable_progress_bar()
