"""`eval_t2i.run(config)`: the one entry of the text-to-image evaluation (what `negenc t2i` calls).

`T2IConfig` validates itself (`negation_encoder.configs`), so the Python API and the CLI accept and
refuse the same values. Everything that can fail on bad input (the prompt or question file, the judge,
the pipeline, the encoder against the pipeline, the output folder) fails before any image is made.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from negation_encoder.configs import Validated, at_least, collect, option
from negation_encoder.devices import DTYPES, resolve_dtype
from negation_encoder.distributed import Processes, processes
from negation_encoder.runio import RunFolder, atomic_write_json, atomic_write_text

from .generation import ARMS, ArmSwitcher, GenerationConfig, load_pipeline
from .judges import JUDGE_KINDS, load_judge
from .runner import OWNED

COMMANDS = ("negscore", "tifa", "compare")


@dataclass
class T2IConfig(Validated):
    """One text-to-image evaluation: which prompts, pipeline, encoder(s), judge, arms and seeds."""

    pipeline: str = option(help="diffusers pipeline: model id or local folder")
    judge: str = option(help="VQA judge: model id or local folder")
    out: str = option(help="output folder (images, images.jsonl, summary.json, report.md, grid.png)")
    command: str = option("negscore", cli=False, choices=COMMANDS)
    prompts: str | None = option(None, "prompt file (Park's 107 JSON, the multi-negation JSON, the split CSV, or "
                                 "our format) or a built-in set: negation_v1, negation_v1_control")
    questions: str | None = option(None, "TIFA v1.0 question/answer JSON (tifa; with compare: also the TIFA-style "
                                   "score of base and swapped)")
    encoder: str | None = option(None, "negation encoder checkpoint folder or Hub repo (the swapped arms)")
    encoder_2: str | None = option(None, "SDXL text_encoder_2 checkpoint, if not the --encoder one")
    judge_kind: str = option("blip", "blip: BlipForQuestionAnswering; vlm: any AutoModelForImageTextToText chat model",
                             choices=JUDGE_KINDS)
    arms: tuple[str, ...] | None = option(None, f"comma list of {', '.join(ARMS)} (default: the base arms, plus the "
                                          "swapped ones with --encoder; compare runs all five)")
    device: str = option("auto", "torch device: auto (CUDA if available), cpu, cuda, cuda:N")
    dtype: str = option("auto", "weights dtype for pipeline and judge (auto: fp16 on CUDA, fp32 on CPU)",
                        choices=DTYPES)
    seeds: tuple[int, ...] = option((0, 1, 2, 3, 4), "comma list of seeds; image i of a prompt uses seed i")
    batch_size: int = option(4, "images per pipeline call")
    judge_batch_size: int = option(16, "(image, question) pairs per judge call")
    steps: int = option(50, "denoising steps")
    guidance_scale: float = option(7.5, "classifier-free guidance scale")
    height: int | None = option(None, "image height (default: the pipeline's)")
    width: int | None = option(None, "image width (default: the pipeline's)")
    limit: int | None = option(None, "only the first N prompts / captions")
    resamples: int = option(2000, "bootstrap resamples for the 95% intervals")
    resume: bool = option(False, "continue a run in --out; finished images are not remade")
    overwrite: bool = option(False, "replace this tool's results in --out (other files there are left alone)")
    progress: bool = option(True, cli=False)

    def __post_init__(self) -> None:
        self.seeds = tuple(int(s) for s in self.seeds)
        if self.arms is not None:
            self.arms = tuple(self.arms)
        super().__post_init__()

    def problems(self) -> list[str]:
        p = collect(*(at_least(self, k, 1) for k in ("batch_size", "judge_batch_size", "steps", "resamples")),
                    at_least(self, "limit", 1, allow_none=True), at_least(self, "guidance_scale", 0))
        for k in ("height", "width"):
            v = getattr(self, k)
            if v is not None and (v < 8 or v % 8):
                p.append(f"{k} must be a positive multiple of 8, got {v}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            p.append(f"seeds must be distinct integers, at least one, got {list(self.seeds)}")
        if self.command in ("negscore", "compare") and not self.prompts:
            p.append(f"prompts is required for {self.command}")
        if self.command == "tifa" and not self.questions:
            p.append("questions is required for tifa")
        if self.command == "compare" and not self.encoder:
            p.append("compare needs encoder (the swapped arms)")
        bad = [a for a in self.arms or () if a not in self.allowed_arms()]
        if bad:
            p.append(f"arms: {', '.join(bad)} not available for {self.command}; expected some of "
                     f"{', '.join(self.allowed_arms())}")
        if any(ARMS[a].swapped for a in self.run_arms() if a in ARMS) and not self.encoder:
            p.append("encoder is required for the swapped arms")
        if self.resume and self.overwrite:
            p.append("resume and overwrite contradict each other; pass one")
        return p

    def allowed_arms(self) -> tuple[str, ...]:
        return ("base", "swapped") if self.command == "tifa" else tuple(ARMS)

    def run_arms(self) -> tuple[str, ...]:
        if self.command == "compare":
            return tuple(ARMS)
        if self.arms:
            return self.arms
        return tuple(a for a in self.allowed_arms() if self.encoder or not ARMS[a].swapped)

    def fingerprint(self) -> dict:
        return {"command": self.command, "pipeline": self.pipeline, "encoder": self.encoder,
                "encoder_2": self.encoder_2, "judge": self.judge, "judge_kind": self.judge_kind, "steps": self.steps,
                "dtype": self.dtype, "guidance_scale": self.guidance_scale, "height": self.height,
                "width": self.width, "prompts": self.prompts, "questions": self.questions,
                # what the stacked arm sends (since d9da903: the prompt as written), so a folder resumed across
                # that change is refused rather than mixing two definitions of one arm
                "stacked_arm": "prompt as written"}


def check_sources(cfg: T2IConfig, arms: tuple[str, ...]) -> None:
    """The pipeline folder and the encoder(s) are what their flags say, read from their configs before any
    model loads: an encoder that is not a CLIP text tower (a BERT, a T5) is one line naming it."""
    from negation_encoder.checkpoint.sources import check_pipeline_folder, check_source_exists, text_tower

    swapped = any(ARMS[a].swapped for a in arms)
    for flag, value in (("--pipeline", cfg.pipeline), ("--encoder", cfg.encoder if swapped else None),
                        ("--encoder-2", cfg.encoder_2 if swapped else None), ("--judge", cfg.judge)):
        if value:
            check_source_exists(value, flag)  # a mistyped folder first, whichever flag it is
    check_pipeline_folder(cfg.pipeline, "--pipeline")
    if cfg.encoder and swapped:
        text_tower(cfg.encoder, "text_encoder", "--encoder")
        if cfg.encoder_2:
            text_tower(cfg.encoder_2, "text_encoder_2", "--encoder-2")


def _setup(cfg: T2IConfig, arms: tuple[str, ...], procs: Processes):
    """Everything that can fail on bad input, in order, before any image: judge, pipeline, encoder (on
    this process's own device under a launcher)."""
    if not cfg.progress:
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()  # the "Loading pipeline components" bar too
    device = procs.device(cfg.device)
    dtype = resolve_dtype(device, cfg.dtype)
    judge = load_judge(cfg.judge, cfg.judge_kind, batch_size=cfg.judge_batch_size, device=str(device), dtype=cfg.dtype)
    pipe = load_pipeline(cfg.pipeline, device, dtype)
    switcher = ArmSwitcher(pipe, cfg.encoder if any(ARMS[a].swapped for a in arms) else None, cfg.encoder_2)
    gen = GenerationConfig(steps=cfg.steps, guidance_scale=cfg.guidance_scale, height=cfg.height, width=cfg.width)
    return judge, switcher, gen


def run(cfg: T2IConfig, log=print) -> dict:
    """Run `cfg.command`; returns {"negscore": summary} and/or {"tifa": summary}.

    Under `accelerate launch` / `torchrun` every process runs this: the main one checks and prepares the
    output folder while the others wait, the images are shared out by `runner.run_jobs`, every process
    gets the same summary, and only the main one writes the summaries, reports and grid (and logs)."""
    from .prompts import load_prompts
    from .tifa import load_tifa_questions

    start = time.perf_counter()
    procs = processes()
    if not procs.is_main:
        log = _quiet
    arms = cfg.run_arms()
    prompt_set = load_prompts(cfg.prompts) if cfg.prompts else None  # bad files fail before any model loads
    questions = load_tifa_questions(cfg.questions) if cfg.questions else None
    check_sources(cfg, arms)
    out = Path(cfg.out)
    folder = RunFolder(out, OWNED)
    procs.on_main(lambda: folder.check(cfg.resume, cfg.overwrite, cfg.fingerprint()))
    judge, switcher, gen = _setup(cfg, arms, procs)
    if procs.is_main:
        _warn_truncation(cfg, prompt_set, questions, switcher.pipe)
    with contextlib.ExitStack() as held:
        def lock_and_prepare() -> None:  # the main process holds the folder for the whole run
            held.enter_context(folder.lock())
            folder.prepare(cfg.resume, cfg.overwrite, cfg.fingerprint())

        procs.on_main(lock_and_prepare)
        results: dict = {}
        if prompt_set is not None:
            results["negscore"] = _negscore(cfg, prompt_set, arms, judge, switcher, gen, log)
        if questions is not None:
            tifa_arms = ("base", "swapped") if cfg.command == "compare" else arms
            results["tifa"] = _tifa(cfg, questions, tifa_arms, judge, switcher, gen, log)
    results["seconds"] = round(time.perf_counter() - start, 1)
    return results


def _warn_truncation(cfg: T2IConfig, prompt_set, questions, pipe) -> None:
    """One stderr line per run when prompts (or TIFA captions) exceed the pipeline tokenizer's window."""
    from .prompts import truncation_note

    tokenizer = getattr(pipe, "tokenizer", None)
    if tokenizer is None:
        return
    notes = []
    if prompt_set is not None:
        items = prompt_set.items[: cfg.limit] if cfg.limit else prompt_set.items
        notes.append(truncation_note([(i.id, i.prompt) for i in items], tokenizer))
    if questions is not None:
        captions = list(dict.fromkeys((q.id, q.caption) for q in questions))
        if cfg.limit:
            captions = captions[: cfg.limit]
        notes.append(truncation_note(captions, tokenizer, "captions"))
    for note in notes:
        if note:
            print(f"negenc: {note}", file=sys.stderr)


def _quiet(*_args, **_kwargs) -> None:
    """The log of a process that is not the main one: the main process speaks for the run."""


def _negscore(cfg: T2IConfig, prompt_set, arms, judge, switcher, gen, log) -> dict:
    from .negscore import NegScoreConfig, run_negscore
    from .prompts import splitter_agreement
    from .report import image_grid, markdown_table, write_summary

    out = Path(cfg.out)
    items = prompt_set.items[: cfg.limit] if cfg.limit else prompt_set.items
    ns = NegScoreConfig(seeds=cfg.seeds, arms=arms, batch_size=cfg.batch_size, resamples=cfg.resamples,
                        progress=cfg.progress)
    summary, records = run_negscore(items, switcher, judge, out, ns, gen)
    summary["prompts"] = {"source": cfg.prompts, "format": prompt_set.format, "n": len(items)}
    summary["splitter_agreement"] = splitter_agreement(items)
    table = markdown_table(summary)

    def write() -> None:
        write_summary(out, summary)
        atomic_write_text(out / "report.md", table)
        image_grid(out, records, arms, cfg.seeds)

    processes().on_main(write)
    log(table)
    log(f"wrote {out / 'summary.json'}, {out / 'report.md'}, {out / 'grid.png'} "
        f"({summary['run']['generated']} images generated, {summary['run']['skipped_finished']} already finished)")
    return summary


def _tifa(cfg: T2IConfig, questions, arms, judge, switcher, gen, log) -> dict:
    from .report import tifa_table
    from .tifa import run_tifa

    out = Path(cfg.out)
    if cfg.limit:
        keep = list(dict.fromkeys(q.id for q in questions))[: cfg.limit]
        questions = [q for q in questions if q.id in keep]
    summary = run_tifa(questions, switcher, judge, out, arms, cfg.seeds, gen, cfg.batch_size, cfg.progress)
    table = tifa_table(summary)

    def write() -> None:
        atomic_write_json(out / "tifa_summary.json", summary)
        atomic_write_text(out / "tifa_report.md", table)

    processes().on_main(write)
    log(table)
    log(f"wrote {out / 'tifa_summary.json'}, {out / 'tifa_report.md'}")
    return summary
