"""Publishing an encoder checkpoint folder to the Hugging Face Hub in one commit.

Stages a copy of the folder with the card rendered for the target repo and pushes it with one
`upload_folder` commit (no half-uploaded repos); pickle weights are refused unless allowed; a dry run
writes nothing. The token comes from the environment or the HF login and is never printed.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from . import layout
from .card import build_model_card, is_generated_card
from .sources import check_encoder_checkpoint

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


@dataclass
class PublishResult:
    repo_id: str
    files: list[str] = field(default_factory=list)
    dry_run: bool = True
    url: str | None = None
    card: str = ""  # the README.md text that is (or would be) uploaded
    card_generated: bool = True  # False: the folder's hand-written README.md is uploaded as it is


def publish(folder: str | Path, repo_id: str, dry_run: bool = False, allow_pickle: bool = False,
            private: bool | None = None, api=None, **card_kwargs) -> PublishResult:
    """Push an encoder folder to the Hub in one commit from a staging copy (the folder itself is never
    changed). The card is generated for `repo_id`, unless the folder has a hand-written README.md,
    which is uploaded as it is. With `dry_run`, nothing is written or uploaded: the result lists the
    files and the card text."""
    folder = Path(folder)
    check_encoder_checkpoint(folder)  # a CLIPModel and its CLIP text_encoder/, read from their configs
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise InputError(f"--repo-id must look like ORG/NAME, got {repo_id!r}")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickles and not allow_pickle:
        raise InputError(f"{folder}: refusing to upload pickle weights ({', '.join(pickles[:3])}); "
                         "convert them to safetensors or pass --allow-pickle")
    readme = folder / layout.MODEL_CARD
    generated = not readme.exists() or is_generated_card(readme)
    card_text = str(build_model_card(folder, repo_id=repo_id, **card_kwargs)) if generated else \
        readme.read_text(encoding="utf-8")
    files = sorted(set(files) | {"README.md"})
    if dry_run:
        return PublishResult(repo_id, files, dry_run=True, card=card_text, card_generated=generated)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()  # token from HF_TOKEN or the saved login; never printed
    with tempfile.TemporaryDirectory() as stage:
        staged = Path(stage) / "repo"
        shutil.copytree(folder, staged)
        (staged / "README.md").write_text(card_text, encoding="utf-8")
        files = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file())
        url = api.create_repo(repo_id, exist_ok=True, private=private)
        api.upload_folder(repo_id=repo_id, folder_path=str(staged), commit_message="Upload negation-aware CLIP encoder")
    return PublishResult(repo_id, files, dry_run=False, url=str(url), card=card_text, card_generated=generated)
