"""The fine-tuning loop on accelerate: text tower only, image embeddings from the cache.

One process:   negenc train --config cfg.yaml
Many GPUs:     accelerate launch -m negation_encoder.cli train --config cfg.yaml
Many nodes:    accelerate launch --num_machines N --machine_rank R --main_process_ip IP ... (same)
CPU, 2 procs:  torchrun --nproc_per_node 2 -m negation_encoder.cli train --config cfg.yaml

`optim.batch_size` is the global batch: each process takes its slice, and the contrastive terms see every
process's texts (gathered with gradients), so N processes train the same weights as one process.
Checkpoints (`<out>/checkpoints/step_N`) are written atomically, and `resume=True` continues from the
newest one with the same data order, optimizer, scheduler and RNG.

Shape: `checks.check_inputs` (no compute) -> `setup.setup` (a `TrainState`) -> `step.train_step` per
optimizer step in a short loop here (log, checkpoint) -> export.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import Terminated
from ..image_cache import ImageEmbeddingCache
from ..runio import atomic_write_text
from .checkpoints import RunDir
from .checks import RunInputs, check_inputs, describe_base
from .config import TrainConfig
from .setup import TrainState, setup
from .step import train_step


@dataclass
class TrainResult:
    out: Path
    steps: int
    log: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int | None = None
    eligible: dict[str, int] = field(default_factory=dict)  # records feeding each enabled term
    records: int = 0

    @property
    def model_dir(self) -> Path:
        return self.out / "model"


class RunningMean:
    """Per-key means of the step dicts added since the last `pop` (one log entry's averages)."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.n += 1

    def pop(self) -> dict[str, float]:
        out = {k: round(v / self.n, 6) for k, v in self.sums.items()}
        self.sums, self.n = {}, 0
        return out


def train(
    cfg: TrainConfig,
    resume: bool = False,
    overwrite: bool = False,
    image_loader: Callable[[str], object] | None = None,
    progress: bool = True,
    accelerator=None,
    echo: Callable[[str], None] | None = print,
) -> TrainResult:
    """Fine-tune `cfg.model.base` on `cfg.data.files`; write checkpoints, a JSON-lines log and `<out>/model`.

    `resume` continues the newest checkpoint in `cfg.run.out` (refusing a config or data that differ in
    anything that changes training); `overwrite` replaces a run already there. Without either, a folder
    holding a run is refused. `echo` (default `print`; None for silence) gets, on the main process, one
    line with the records each enabled term trains on, counted before any compute.
    """
    from accelerate import Accelerator

    t0 = time.perf_counter()
    run = RunDir(cfg.run.out)
    # step_scheduler_with_optimizer=False: accelerate would otherwise advance the schedule once per
    # process per step; the batch size is already the global batch, so the schedule counts optimizer steps.
    accelerator = accelerator or Accelerator(mixed_precision=cfg.optim.mixed_precision,
                                             gradient_accumulation_steps=cfg.optim.grad_accum,
                                             step_scheduler_with_optimizer=False,
                                             cpu=not torch.cuda.is_available())
    inputs = check_inputs(cfg, accelerator, run, resume, overwrite, image_loader)
    if echo is not None and accelerator.is_main_process:
        echo(f"eligible records (of {len(inputs.records)}): "
             + ", ".join(f"{t} {n}" for t, n in inputs.eligible.items()))
    if resume and inputs.found is None:
        accelerator.print(f"--resume: no checkpoint under {run.out / 'checkpoints'}; starting from step 0")
    cache = ImageEmbeddingCache(cfg.data.cache_dir or run.out / "image_cache")
    with run.lock() if accelerator.is_main_process else contextlib.nullcontext():
        if overwrite and accelerator.is_main_process:
            run.remove_run()
        accelerator.wait_for_everyone()
        state = setup(cfg, inputs, accelerator, run, cache, image_loader, progress)
        log = _loop(state, inputs, progress, t0)
        _export(state, inputs)
    return TrainResult(out=run.out, steps=cfg.optim.steps, log=log, seconds=time.perf_counter() - t0,
                       resumed_from=inputs.found[0] if inputs.found else None, eligible=inputs.eligible,
                       records=len(inputs.records))


def _loop(state: TrainState, inputs: RunInputs, progress: bool, t0: float) -> list[dict]:
    """Steps from `state.start_step`: a log entry every `log_every`, a checkpoint every `save_every`."""
    cfg, accelerator, run = state.cfg, state.accelerator, state.run
    steps = cfg.optim.steps
    if accelerator.is_main_process:
        # the eligibility counts first; a resumed run never logs a step twice, a fresh one starts empty
        run.start_log(state.start_step, inputs.log_header)
        atomic_write_text(run.out / "training_config.json", cfg.to_json())
    accelerator.wait_for_everyone()
    saved = {"config": cfg.to_dict(), "data_fingerprint": inputs.fingerprint}
    log: list[dict] = []
    mean = RunningMean()
    bar = tqdm(total=steps, initial=state.start_step, desc="fine-tune",
               disable=not progress or not accelerator.is_main_process)
    done = state.start_step  # steps finished, for the last line of a stopped run
    try:
        for step in range(state.start_step, steps):
            mean.add(train_step(state, step))
            done = step + 1
            bar.update(1)
            if done % cfg.run.log_every == 0 or done == steps:
                entry = {"step": done, **mean.pop(), "lr": state.scheduler.get_last_lr()[0],
                         "logit_scale": float(state.logit_scale().exp()), "seconds": round(time.perf_counter() - t0, 2)}
                log.append(entry)
                if accelerator.is_main_process:
                    run.append_log(entry)
                    bar.set_postfix(loss=f"{entry['loss']:.3f}")
            if done % cfg.run.save_every == 0 or done == steps:
                run.save_checkpoint(accelerator, done, cfg.run.keep_checkpoints, saved)
    except (Terminated, KeyboardInterrupt) as e:  # the CLI's last line: where the run stood, how to go on
        e.resume_note = run.stopped_note(done, steps)
        raise
    bar.close()
    return log


def _export(state: TrainState, inputs: RunInputs) -> None:
    """Copy the trained logit scale into the CLIPModel and export it (main process) to `<out>/model`."""
    from ..checkpoint.export import export_checkpoint

    cfg, accelerator = state.cfg, state.accelerator
    accelerator.wait_for_everyone()
    state.model.logit_scale.data.copy_(state.logit_scale().data)
    state.model.to("cpu")
    if accelerator.is_main_process:
        export_checkpoint(state.model, inputs.tokenizer, inputs.image_processor, state.run.out / "model",
                          training_config={**cfg.to_dict(), "base_model": describe_base(cfg.model.base),
                                           "objectives": state.objective.describe()},
                          trainable=state.trainable)
    accelerator.wait_for_everyone()


def latest_checkpoint(out: str | os.PathLike) -> tuple[int, Path] | None:
    return RunDir(out).latest()
