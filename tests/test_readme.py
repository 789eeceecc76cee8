"""The README keeps its promises: its Python quick start runs, its shape holds, and the repository is
self-contained.

The quick start is run as written, with only its Hub ids and paths replaced by tiny local models (the
way `test_hub.py` runs the model card's snippets) and its step counts shortened, so a renamed function
or argument in the public API fails here.
"""

import re
import subprocess
from pathlib import Path

import pytest
import torch

from negation_encoder.checkpoint.export import export_checkpoint
from negation_encoder.testing import tiny

from ._tiny_world import make_tiny_world

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 220
RESULTS_BEGIN, RESULTS_END = "<!-- results:routes -->", "<!-- /results:routes -->"


def _section(text: str, title: str) -> str:
    """The text of the `## title` section, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines; keep it to ~200 (at most {MAX_LINES}) and move detail to docs/"


def test_quick_start_is_two_commands_and_ci_runs_the_second():
    blocks = _blocks(_section(README.read_text(encoding="utf-8"), "Quick start"), "bash")
    assert len(blocks) == 1, f"'## Quick start' should hold one bash block, found {len(blocks)}"
    commands = [line.strip() for line in blocks[0].splitlines() if line.strip() and not line.strip().startswith("#")]
    assert commands == ["make demo", "make test"], f"expected `make demo` then `make test`, got {commands}"
    ci = ROOT / ".ci" / "run"
    assert commands[1] in ci.read_text(encoding="utf-8"), f"{ci} does not call the README's test command"


def test_readme_has_the_results_markers_once():
    text = README.read_text(encoding="utf-8")
    assert text.count(RESULTS_BEGIN) == 1 and text.count(RESULTS_END) == 1, \
        f"README.md needs exactly one {RESULTS_BEGIN} ... {RESULTS_END} pair (negenc testbed report fills it)"
    assert text.index(RESULTS_BEGIN) < text.index(RESULTS_END)


def _repository_files() -> list[Path]:
    """Tracked and untracked-but-not-ignored files (what a commit would hold); a plain walk without git."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, text=True, check=True, timeout=30).stdout
        files = [ROOT / line for line in out.splitlines() if line]
    except (OSError, subprocess.SubprocessError):
        skip = {".git", ".venv", "demo_out", "compare_out", "runs", "build", "dist"}
        files = [p for p in ROOT.rglob("*") if not skip & set(p.relative_to(ROOT).parts)]
    return [p for p in files if p.is_file() and (p.suffix in (".py", ".md", ".toml") or p.name == "Makefile")]


def test_repository_is_self_contained():
    """The team's design card lives outside the repository; the repository's own copy is docs/design.md."""
    offenders = []
    for path in _repository_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for needle in ("DESIGN.md", "../shared"):
            if needle in text and path != Path(__file__).resolve():
                offenders.append(f"{path.relative_to(ROOT)} cites {needle}")
    assert not offenders, "cite docs/design.md instead: " + "; ".join(offenders)


@pytest.fixture(scope="module")
def local_models(tmp_path_factory):
    """Local stand-ins for the snippet's Hub ids: a tiny SD 1.x pipeline, an encoder folder of its width,
    and a tiny training world (base CLIP, images, NegationRecord JSONL)."""
    from diffusers import StableDiffusionPipeline

    root = tmp_path_factory.mktemp("readme")
    StableDiffusionPipeline(**tiny.build_sd_components(seed=0), requires_safety_checker=False).save_pretrained(
        root / "sd")
    tok = tiny.build_clip_tokenizer()
    export_checkpoint(tiny.build_clip_model(seed=3, tokenizer=tok), tok, tiny.build_clip_image_processor(32),
                      root / "encoder", training_config={"base": "tiny"})
    return {"root": root, "sd": root / "sd", "encoder": root / "encoder", "world": make_tiny_world(root / "world")}


def test_python_quick_start_runs(local_models):
    blocks = _blocks(_section(README.read_text(encoding="utf-8"), "Python quick start"), "python")
    assert len(blocks) == 1, f"'## Python quick start' should hold one python block, found {len(blocks)}"
    code = blocks[0]
    world, out = local_models["world"], local_models["root"] / "train_out"
    replacements = {
        '"CompVis/stable-diffusion-v1-4"': repr(str(local_models["sd"])),
        '"ORG/negation-clip"': repr(str(local_models["encoder"])),
        '"openai/clip-vit-base-patch32"': repr(world["base"]),
        '"negations.jsonl"': repr(world["data"]),
        '"coco/train2014"': repr(world["images"]),
        '"run": {"out": "runs/negclip"}': f'"run": {{"out": {str(out)!r}}}, '
                                          '"optim": {"steps": 3, "batch_size": 8, "warmup_steps": 1}',  # a short run
        "generator=": "num_inference_steps=2, generator=",  # 2 denoising steps instead of 50
    }
    for old, new in replacements.items():
        assert old in code, f"the README's Python quick start no longer contains {old}; update this test with it"
        code = code.replace(old, new)
    scope: dict = {}
    exec(compile(code, "<README Python quick start>", "exec"), scope)  # noqa: S102 - our own README

    assert scope["kwargs"] == {"prompt": "a street with no cars", "negative_prompt": "cars"}, \
        f"negation_kwargs no longer stacks the README's prompt as its comment says: {scope['kwargs']}"
    assert scope["image"].size == (32, 32)
    te = scope["pipe"].text_encoder
    reference = scope["load_negation_text_encoder"](str(local_models["encoder"]))
    assert all(torch.equal(a, b) for a, b in zip(te.state_dict().values(), reference.state_dict().values(),
                                                  strict=True)), "the pipeline does not hold the swapped encoder"
    model_dir = scope["result"].model_dir
    assert model_dir == out / "model" and (model_dir / "text_encoder" / "config.json").is_file(), \
        f"train() did not write the checkpoint folder under {out}"


def test_results_pages_are_generated_from_the_committed_result_files():
    """docs/results/*.md and the README's results block are what `negenc testbed report` renders from
    docs/results/data/ (a page edited by hand, or data copied in without regenerating, fails here)."""
    from negation_testbed.reports import report

    stale = report(ROOT / "docs" / "results" / "data", ROOT / "docs" / "results", README, check=True)
    assert stale == [], f"stale: {stale}; run `negenc testbed report`"
