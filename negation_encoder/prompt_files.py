"""Versioned prompt templates (`prompts/<name>.v<N>.txt`): what an LLM or MLLM is asked, one file each.

The version is recorded in every record's provenance and in an LLM splitter's name, so a result can
always say which wording produced it.
"""

from __future__ import annotations

from importlib import resources

PROMPT_VERSION = "v1"


def load_prompt(name: str, version: str = PROMPT_VERSION) -> str:
    path = resources.files("negation_encoder").joinpath(f"prompts/{name}.{version}.txt")
    if not path.is_file():
        raise FileNotFoundError(f"no prompt template {name}.{version}.txt in negation_encoder/prompts")
    return path.read_text(encoding="utf-8")
