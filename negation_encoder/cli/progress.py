"""`--no-progress`: one switch for every bar a command can show.

Our own bars are tqdm bars (silenced by `TQDM_DISABLE`, which tqdm reads for every bar it creates, and
by the `progress=False` each command passes down); the libraries' are transformers' weight-loading
bars, huggingface_hub's download bars and diffusers' pipeline-loading and denoising bars. `main()` calls
`silence_progress()` once for any command given `--no-progress`.
"""

from __future__ import annotations

import os


def silence_progress() -> None:
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # child processes (accelerate, torchrun) too
    os.environ["TQDM_DISABLE"] = "1"
    silence_library_bars()


def silence_library_bars() -> None:
    """The libraries' bars only (weight loading, downloads, pipelines); our own tqdm bars stay."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        from diffusers.utils import logging as diffusers_logging
    except ImportError:  # diffusers is a dependency, but the core never needs it to run
        return
    diffusers_logging.disable_progress_bar()
