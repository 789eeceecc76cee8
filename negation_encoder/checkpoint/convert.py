"""Turn the papers' released CLIP checkpoints into our encoder checkpoint folder (`negenc convert`).

NegationCLIP releases OpenAI-`clip` files (a state dict of OpenAI's `CLIP` module, or a TorchScript
archive as `clip.load(..., jit=True)` reads); NegBench releases open_clip training checkpoints
(`{"state_dict": ...}` with DDP's `module.` prefix, or a bare state dict). Both are read without the
source packages: the architecture comes from the shapes (`original_layouts.infer_architecture`), the
weights are renamed into a transformers `CLIPModel`, and `export.export_checkpoint` writes the folder
every command here loads.

What the file does not say is asked for or defaulted, and recorded in `conversion.json`: the
tokenizer (OpenAI's 49408-token BPE is not shipped and cannot be downloaded here), the activation
(OpenAI's models and those fine-tuned from them use QuickGELU; open_clip's LAION-trained ones GELU) and,
for unusual widths, the head counts.
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import IncompatibleModelError, InputError
from ..runio import atomic_write_json
from . import layout
from .export import export_checkpoint
from .original_layouts import Architecture, expected_original_keys, infer_architecture, to_transformers

SOURCES = ("openai", "open_clip")
ACTIVATIONS = ("quick_gelu", "gelu")
STANDARD_VOCAB = 49408
# Hub repos whose tokenizer is OpenAI's 49408-token BPE; used only when already in the local HF cache.
STANDARD_TOKENIZER_REPOS = ("openai/clip-vit-base-patch32", "openai/clip-vit-base-patch16",
                            "openai/clip-vit-large-patch14", "openai/clip-vit-large-patch14-336")
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module")


@dataclass
class Conversion:
    out: Path
    architecture: Architecture
    activation: str
    tokenizer: str
    read_as: str


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(name.endswith("/constants.pkl") or name == "constants.pkl" for name in z.namelist())


def read_checkpoint(path: str | os.PathLike, allow_unsafe_pickle: bool = False) -> tuple[dict, str]:
    """(the object in the file, how it was read): safetensors, a TorchScript archive's `state_dict()`, or a
    pickle read with `weights_only=True` (with `allow_unsafe_pickle`, a full unpickle when that fails)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file")
    if not p.is_file():
        raise InputError(f"{path}: not a file")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device="cpu"), "safetensors"
        except Exception as e:  # noqa: BLE001 - any reader failure is a bad file, reported in one line
            raise InputError(f"{path}: cannot read it as safetensors ({_first_line(e)})") from None
    if _is_torchscript(p):
        try:
            return dict(torch.jit.load(str(p), map_location="cpu").state_dict()), "torchscript"
        except Exception as e:  # noqa: BLE001
            raise InputError(f"{path}: cannot read this TorchScript archive ({_first_line(e)})") from None
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True), "pickle (weights only)"
    except Exception as e:  # noqa: BLE001 - the reader raises several kinds; each is reported in one line
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if not found:  # not a pickle of objects the weights-only reader refused: a broken or foreign file
            reason = next((line.strip() for line in str(e).splitlines() if "Unsupported" in line), _first_line(e))
            raise InputError(f"{path}: not a readable checkpoint ({reason})") from None
        if not allow_unsafe_pickle:
            raise InputError(f"{path}: holds more than plain weights (it pickles {found.group(1)}); if you trust the "
                             "file, pass --allow-unsafe-pickle (unpickling runs code the file names)") from None
    try:
        return torch.load(str(p), map_location="cpu", weights_only=False), "pickle (full)"
    except ModuleNotFoundError as e:
        raise InputError(f"{path}: pickles objects of module {e.name!r}, which is not installed; save the model's "
                         "state_dict() with torch.save and convert that") from None
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{path}: not a readable checkpoint ({_first_line(e)})") from None


def state_dict_of(obj, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The CLIP weights inside what a checkpoint file held: unwrap training dicts, drop DDP/compile prefixes and
    open_clip's `text.` tower prefix (CustomTextCLIP)."""
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    for _ in range(3):
        if isinstance(obj, dict):
            inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is not None and not any(isinstance(v, torch.Tensor) for v in obj.values()):
                obj = inner
                continue
        break
    if not isinstance(obj, dict) or not obj:
        raise InputError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise InputError(f"{path}: holds no tensors (top-level keys: {', '.join(map(str, list(obj)[:5]))})")
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    if "text.token_embedding.weight" in sd:
        sd = {k[len("text."):] if k.startswith("text.") else k: v for k, v in sd.items()}
    return sd


def resolve_tokenizer(tokenizer, vocab_size: int):
    """A CLIPTokenizer for a checkpoint with `vocab_size` rows: the one given (object or folder), else our
    offline tokenizer when the sizes match (tiny models), else OpenAI's BPE from the local HF cache."""
    from transformers import CLIPTokenizer

    from ..offline import build_clip_tokenizer
    from .layout import tokenizer_source

    if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer, type(tokenizer).__name__
    if tokenizer is not None:
        folder = Path(tokenizer)
        if not folder.is_dir():
            raise InputError(f"--tokenizer {tokenizer}: not a folder (expected CLIPTokenizer files: vocab.json, "
                             "merges.txt, tokenizer_config.json)")
        path, sub = tokenizer_source(folder)
        files = Path(path) / (sub or "")
        if not ((files / "vocab.json").is_file() and (files / "merges.txt").is_file()) and \
                not (files / "tokenizer.json").is_file():
            # transformers 5 builds an empty tokenizer from a folder without files instead of failing
            raise InputError(f"--tokenizer {tokenizer}: cannot load a CLIPTokenizer (no vocab.json + merges.txt or "
                             "tokenizer.json in it)")
        try:
            tok = CLIPTokenizer.from_pretrained(path, subfolder=sub) if sub else CLIPTokenizer.from_pretrained(path)
        except (OSError, ValueError, TypeError) as e:
            raise InputError(f"--tokenizer {tokenizer}: cannot load a CLIPTokenizer ({_first_line(e)})") from None
        return tok, folder.name
    offline = build_clip_tokenizer()
    if len(offline) == vocab_size:
        return offline, "offline (negation_encoder.offline.build_clip_tokenizer)"
    if vocab_size == STANDARD_VOCAB:
        for repo in STANDARD_TOKENIZER_REPOS:
            try:
                tok = CLIPTokenizer.from_pretrained(repo, local_files_only=True)
            except (OSError, ValueError):
                continue
            if len(tok) == STANDARD_VOCAB:  # not the empty tokenizer transformers 5 builds when no file is cached
                return tok, repo
        raise InputError(f"the checkpoint uses OpenAI's {STANDARD_VOCAB}-token CLIP vocabulary, whose tokenizer files "
                         "are not in this package nor in the local Hugging Face cache: pass --tokenizer DIR, a folder "
                         "with vocab.json and merges.txt (e.g. `hf download openai/clip-vit-base-patch32 vocab.json "
                         "merges.txt tokenizer_config.json special_tokens_map.json --local-dir DIR`)")
    raise InputError(f"the checkpoint has a {vocab_size}-token vocabulary, not CLIP's standard {STANDARD_VOCAB}: pass "
                     "--tokenizer DIR with the tokenizer it was trained with")


def _check_tokenizer(tok, vocab_size: int, where: str) -> None:
    if len(tok) > vocab_size:
        raise IncompatibleModelError(f"tokenizer {where} has {len(tok)} tokens but the checkpoint embeds {vocab_size}")
    if tok.eos_token_id is None or tok.eos_token_id != len(tok) - 1:
        # The source models pool at argmax(token id); transformers pools at the first eos. They agree only
        # when eos is the highest id the tokenizer emits, as in OpenAI's vocabulary.
        raise IncompatibleModelError(f"tokenizer {where}: eos id {tok.eos_token_id} is not its highest id "
                                     f"{len(tok) - 1}; the source pools text at the highest token id")


def build_clip_model(sd: dict[str, torch.Tensor], arch: Architecture, activation: str, tokenizer, path: str = ""):
    """A transformers CLIPModel holding the original weights (float32), after checking every key maps."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    present = {k for k in sd if k not in ("input_resolution", "context_length", "vocab_size", "attn_mask")}
    expected = expected_original_keys(arch, linear_projection="text_projection.weight" in sd)
    unmapped, missing = sorted(present - expected), sorted(expected - present)
    if unmapped or missing:
        parts = [f"{what} keys: {', '.join(keys[:5])}{f' (+{len(keys) - 5} more)' if len(keys) > 5 else ''}"
                 for what, keys in (("unmapped", unmapped), ("missing", missing)) if keys]
        raise IncompatibleModelError(f"{path}: not the ViT CLIP layout this converter maps ({'; '.join(parts)})")
    text = CLIPTextConfig(
        vocab_size=arch.vocab_size, hidden_size=arch.text_width, intermediate_size=arch.text_intermediate,
        num_hidden_layers=arch.text_layers, num_attention_heads=arch.text_heads,
        max_position_embeddings=arch.context_length, hidden_act=activation, projection_dim=arch.embed_dim,
        layer_norm_eps=1e-5, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    vision = CLIPVisionConfig(
        hidden_size=arch.vision_width, intermediate_size=arch.vision_intermediate, num_hidden_layers=arch.vision_layers,
        num_attention_heads=arch.vision_heads, image_size=arch.image_size, patch_size=arch.patch_size,
        hidden_act=activation, projection_dim=arch.embed_dim, layer_norm_eps=1e-5)
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=arch.embed_dim)
    model = CLIPModel(config).eval()
    hf, unmapped = to_transformers({k: v.float() for k, v in sd.items()})
    if unmapped:  # expected_original_keys and to_transformers disagree: a bug here, not in the file
        raise IncompatibleModelError(f"{path}: unmapped keys {', '.join(unmapped[:5])}")
    try:
        result = model.load_state_dict(hf, strict=False)
    except RuntimeError as e:
        msg = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), _first_line(e))
        raise IncompatibleModelError(f"{path}: {msg}") from None
    left = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if left or result.unexpected_keys:
        raise IncompatibleModelError(f"{path}: CLIPModel keys not filled: {', '.join((left + result.unexpected_keys)[:5])}")
    return model


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert_checkpoint(src: str | os.PathLike, out: str | os.PathLike, source: str = "openai", tokenizer=None,
                       activation: str | None = None, text_heads: int | None = None, vision_heads: int | None = None,
                       allow_unsafe_pickle: bool = False, overwrite: bool = False) -> Conversion:
    """Convert an OpenAI-`clip` or open_clip checkpoint file into an encoder checkpoint folder at `out`."""
    from transformers import CLIPImageProcessor

    if source not in SOURCES:
        raise InputError(f"--from must be one of {', '.join(SOURCES)}, got {source!r}")
    activation = activation or "quick_gelu"  # OpenAI's, and that of everything fine-tuned from OpenAI's weights
    if activation not in ACTIVATIONS:
        raise InputError(f"--act must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"--out {out} exists; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    obj, read_as = read_checkpoint(src, allow_unsafe_pickle)
    sd = state_dict_of(obj, src)
    arch = infer_architecture(sd, text_heads, vision_heads, open_clip=source == "open_clip")
    tok, tok_name = resolve_tokenizer(tokenizer, arch.vocab_size)
    _check_tokenizer(tok, arch.vocab_size, tok_name)
    if tok.model_max_length > arch.context_length:
        tok.model_max_length = arch.context_length
    model = build_clip_model(sd, arch, activation, tok, str(src))
    processor = CLIPImageProcessor(size={"shortest_edge": arch.image_size},
                                   crop_size={"height": arch.image_size, "width": arch.image_size})
    export_checkpoint(model, tok, processor, out, card_fields={"model_name": out.name})
    src_path = Path(src)
    atomic_write_json(out / layout.CONVERSION, {
        "source_format": source, "source_file": src_path.name, "source_sha256": _sha256(src_path), "read_as": read_as,
        "activation": activation, "tokenizer": tok_name, "architecture": arch.as_dict(),
    })
    return Conversion(out, arch, activation, tok_name, read_as)
