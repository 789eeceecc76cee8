"""`negenc train` / `data` / `publish` as a user meets them: every bad input is one line and exit 2, found
before any compute, and nothing a user made is lost. Runs `main([...])` in-process."""

import json
import os
import subprocess
import sys

import pytest

from negation_encoder.cli import main
from negation_encoder.testing import tiny

from ._tiny_world import make_tiny_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("cliworld")
    w = make_tiny_world(root)
    cfg = {"optim": {"steps": 2, "batch_size": 8, "lr": 1e-3, "warmup_steps": 1},
           "run": {"save_every": 1, "log_every": 1}, "data": {"cache_dir": str(root / "cache")}}
    (root / "cfg.json").write_text(json.dumps(cfg))
    w["cfg"] = str(root / "cfg.json")
    # a finished run that the refusal cases must leave untouched
    w["run"] = root / "run"
    assert main(_train_args(w, w["run"])) == 0
    return w


def _train_args(w, out, *extra, config=None):
    return ["train", "--config", config or w["cfg"], "--base", w["base"], "--data", w["data"], "--images",
            w["images"], "--out", str(out), "--no-progress", *extra]


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_exit_2(capsys, argv, *needles):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert err.count("\n") == 0, err
    for n in needles:
        assert n in err, (n, err)
    return err


def _config_file(tmp_path, w, key: str, value):
    """The fixture's config with dotted `key` set to `value` (any JSON value: the point is a wrong one)."""
    cfg = json.loads(open(w["cfg"]).read())
    *groups, last = key.split(".")
    node = cfg
    for g in groups:
        node = node.setdefault(g, {})
    node[last] = value
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    return str(path)


# ---- config values: the wrong type is named, never silently accepted


@pytest.mark.parametrize("key,value,needle", [
    ("objective.infonce.hard_negatives", "no", "key 'objective.infonce.hard_negatives' expects bool, got str \"no\""),
    ("objective.infonce.hard_negatives", "false", "key 'objective.infonce.hard_negatives' expects bool, got str"),
    ("optim.steps", "six", "key 'optim.steps' expects int, got str"),
    ("optim.steps", 6.5, "key 'optim.steps' expects int, got float 6.5"),
    ("objective.mcq.weight", "lots", "key 'objective.mcq.weight' expects float, got str"),
    ("objective.mcq", "lots", "key 'objective.mcq' expects float, got str"),
    ("model.layers", 3, "key 'model.layers' expects str, got int 3"),
    ("data.files", 5, "key 'data.files' expects list[str], got int 5"),
    ("model.layers", "front:x", "model: layers must be all, front:K, back:K or a comma list"),
    ("model.layers", "back:-1", "model: layers must be all, front:K, back:K or a comma list"),
    ("model.layers", "front:99", "config key 'model.layers'"),
    ("model.layers", "0,99", "indices [99] out of range for 2 layers"),
    ("objective.distractor.types", ["colour"], "objective.distractor: types must name negation types (absence|presence|"),
    ("objective.distractor.sources", [""], "objective.distractor: sources must be non-empty source names, got ['']"),
    ("objective.nonsense", 1.0, "unknown loss term 'nonsense'; registered terms: infonce, mcq,"),
    ("optim.lrate", 1.0, "unknown key(s) optim.lrate; known under optim: steps, batch_size"),
    ("lr", 1.0, "mixes the grouped form (optim, run, data) with flat keys of the form before groups: lr (now optim.lr)"),
    ("objective", 1.0, "objective must map term names to their configs, got float"),
])
def test_bad_config_values_are_one_line_before_any_compute(world, tmp_path, capsys, key, value, needle):
    out = tmp_path / "fresh"
    _one_line_exit_2(capsys, _train_args(world, out, config=_config_file(tmp_path, world, key, value)), needle)
    assert not out.exists() or not any(out.iterdir()), "something was written before the input was checked"


def test_set_nan_lr_is_refused(world, tmp_path, capsys):
    _one_line_exit_2(capsys, _train_args(world, tmp_path / "o", "--set", "optim.lr=nan"),
                     "optim: lr must be a finite number, got nan")
    _one_line_exit_2(capsys, _train_args(world, tmp_path / "o", "--set", "optim.steps=2.5"),
                     "key 'optim.steps' expects int, got '2.5'")
    # a flat key from before the config had groups is named with its new place
    _one_line_exit_2(capsys, _train_args(world, tmp_path / "o", "--set", "omit_states=3"),
                     "unknown config key 'omit_states'; it is now objective.omit_states.weight")


# ---- the output folder: nothing lost, one run at a time


def test_rerun_into_a_run_is_refused_and_changes_nothing(world, capsys):
    before = _snapshot(world["run"])
    _one_line_exit_2(capsys, _train_args(world, world["run"]), "already holds results", "--resume", "--overwrite")
    assert _snapshot(world["run"]) == before


def test_out_that_is_a_file(world, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("mine")
    _one_line_exit_2(capsys, _train_args(world, f), "is a file, expected a folder")
    assert f.read_text() == "mine"


def test_a_folder_locked_by_a_live_run_is_refused(world, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    lock = out / ".negenc.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time, filelock; l = filelock.FileLock(sys.argv[1]); "
                               "l.acquire(); print('held', flush=True); time.sleep(60)", str(lock)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        _one_line_exit_2(capsys, _train_args(world, out), "another run is using this folder")
        assert sorted(p.name for p in out.iterdir()) == [".negenc.lock"]
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone, and the OS released its lock with it: the run goes through
    assert main(_train_args(world, out)) == 0


@pytest.mark.parametrize("change,needle", [
    (["--set", "optim.lr=0.5"], "optim.lr (0.001 -> 0.5)"),
    (["--set", "model.layers=front:1"], "model.layers ('all' -> 'front:1')"),
    (["--set", "objective.omit_states=1"], "objective.omit_states.weight (None -> 1.0)"),
])
def test_resume_refuses_a_changed_config(world, tmp_path, capsys, change, needle):
    before = _snapshot(world["run"])
    _one_line_exit_2(capsys, _train_args(world, world["run"], "--resume", *change),
                     "the config differs from the checkpoint", needle)
    assert _snapshot(world["run"]) == before


def test_a_checkpoint_older_than_a_config_key_resumes_with_its_default():
    """A checkpoint written before a key existed trained with that key's default: no conflict then, and a
    real change of the key is still one."""
    from negation_encoder.training.config import TrainConfig, resume_conflicts

    cfg = TrainConfig.from_dict({"model": {"base": "b"}, "data": {"files": ["d.jsonl"], "images": "i"},
                                 "objective": {"distractor": 1.0}})
    saved = cfg.to_dict()
    del saved["objective"]["distractor"]["sources"]
    assert resume_conflicts(saved, cfg) == []
    changed = cfg.override({"objective.distractor.sources": ["crops"]})
    assert resume_conflicts(saved, changed) == ["objective.distractor.sources ([] -> ['crops'])"]


# The config a checkpoint of a run from before TrainConfig had groups holds (trainer_state.json's "config",
# as those runs wrote it): every key flat, every term's weight by its name.
FLAT = {"base": "b", "batch_size": 64, "cache_dir": "", "data": ["d.jsonl"], "distractor": 2.0,
        "distractor_sources": ["p1", "crops"], "distractor_types": [], "grad_accum": 1, "hard_negatives": False,
        "image_batch_size": 256, "images": "i", "infonce": 0.3, "infonce_on_bare": False, "keep_checkpoints": 2,
        "layers": "all", "learn_logit_scale": False, "log_every": 50, "lr": 0.001, "max_distractors": 4,
        "max_foils": 3, "max_grad_norm": 1.0, "mcq": 2.0, "min_lr_ratio": 0.0, "mixed_precision": "no",
        "omit_states": 3.0, "omit_types": ["absence"], "omni_absence": 0.0, "omni_margin": 0.8, "omni_presence": 0.0,
        "omni_temperature": 0.07, "out": "o", "preserve": 1.0, "preserve_embeds": 1.0, "preserve_states": 3.0,
        "recipe": "default", "save_every": 250, "seed": 0, "seg_affirm": 0.0, "seg_batch_size": 32, "seg_choice": 0.0,
        "seg_data": ["r.jsonl"], "seg_dice": 1.0, "seg_images": "", "seg_loss": 1.0, "seg_model": "s", "split_distill": 0.0,
        "split_distill_w": 1.0, "states_length": 77, "states_mask": True, "states_skip_pooled": False, "steps": 1000,
        "train_embeddings": True, "train_final_layer_norm": True, "train_projection": True, "unet_batch_size": 16,
        "unet_guidance": 4.0, "unet_loss": 0.0, "unet_mode": "teacher", "unet_model": "", "unet_on_policy": False,
        "unet_sample_steps": 10, "warmup_steps": 30, "weight_decay": 0.1}


def test_a_checkpoint_from_before_the_groups_resumes_under_the_grouped_config():
    """The flat config of an older checkpoint is read key by key: the same run written in groups has no
    conflict with it, and a real change is named by its new key."""
    from negation_encoder.training.config import TrainConfig, resume_conflicts

    grouped = TrainConfig.from_dict({
        "model": {"base": "b"}, "data": {"files": ["d.jsonl"], "images": "i"}, "pipeline": {"family": "if"},
        "optim": {"steps": 1000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 30},
        "run": {"out": "o", "recipe": "default", "log_every": 50, "save_every": 250},
        "objective": {"infonce": 0.3, "mcq": 2.0, "distractor": {"weight": 2.0, "sources": ["p1", "crops"]},
                      "preserve_embeds": 1.0, "preserve": 1.0, "omit_states": {"weight": 3.0, "types": ["absence"]},
                      "preserve_states": 3.0, "seg_loss": {"weight": 1.0, "model": "s", "data": ["r.jsonl"]}}})
    assert TrainConfig.from_dict(FLAT) == grouped
    assert resume_conflicts(FLAT, grouped) == []
    assert resume_conflicts(FLAT, grouped.override({"objective.mcq": 1.0})) == ["objective.mcq.weight (2.0 -> 1.0)"]
    # the flat form named the pipeline by its mask: masked is the IF-style reading, unmasked SD 1.x's
    assert TrainConfig.from_dict({**FLAT, "states_mask": False}).pipeline.family == "sd1"
    assert resume_conflicts({**FLAT, "seg_affirm": 0.5}, grouped)[0].startswith("the checkpoint's config cannot be "
                                                                                "read")


def test_resume_refuses_changed_data(world, tmp_path, capsys):
    other = tmp_path / "other.jsonl"
    lines = open(world["data"]).read().splitlines()
    other.write_text("\n".join(lines[:-1]) + "\n")
    args = _train_args(world, world["run"], "--resume")
    args[args.index("--data") + 1] = str(other)
    _one_line_exit_2(capsys, args, "training data", "changed since the checkpoint")


def _log_steps(out):
    """The steps train_log.jsonl records; its first line is the eligibility header, not a step."""
    header, *entries = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert set(header) == {"eligible", "records"}, header
    return [e["step"] for e in entries]


def test_resume_and_overwrite_branches_in_process(world, tmp_path, capsys):
    out = tmp_path / "branches"
    assert main(_train_args(world, out)) == 0
    steps_before = _log_steps(out)
    # resuming a finished run: nothing left to train, the log keeps each step once (after its header)
    assert main(_train_args(world, out, "--resume")) == 0
    steps_after = _log_steps(out)
    assert steps_before == steps_after == [1, 2]
    # --overwrite: an explicit replacement, with another config
    assert main(_train_args(world, out, "--overwrite", "--set", "optim.steps=3", "run.save_every=3")) == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_3"]
    assert _log_steps(out) == [1, 2, 3]
    assert json.loads((out / "model" / "training_config.json").read_text())["optim"]["steps"] == 3


# ---- the base model


@pytest.mark.parametrize("builder,what", [
    (lambda: tiny.build_clip_text_model(seed=0), "a CLIPTextModel folder (a text tower alone has no vision tower)"),
    (lambda: tiny.build_clipseg(seed=0), "a CLIPSegForImageSegmentation folder (model_type 'clipseg')"),
    (lambda: tiny.build_non_clip_text_model("bert"), "a BertModel folder (model_type 'bert')"),
    (lambda: tiny.build_non_clip_text_model("t5"), "a T5EncoderModel folder (model_type 't5')"),
])
def test_base_that_is_not_a_clipmodel(world, tmp_path, capsys, builder, what):
    base = tmp_path / "notclip"
    builder().save_pretrained(base)
    args = _train_args(world, tmp_path / "o")
    args[args.index("--base") + 1] = str(base)
    _one_line_exit_2(capsys, args, f"--base {base}: {what}; expected a CLIPModel checkpoint (model_type 'clip') "
                     "(the base whose text tower is fine-tuned)")
    assert not (tmp_path / "o").exists()


# ---- records: bytes, emptiness, lengths


def _records(tmp_path, rows, name="d.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def _rec(i, **over):
    r = {"id": f"x{i}", "image": "0.png", "caption": "a photo of a dog", "negated_caption": "a photo of a dog with no cat",
         "negation_type": "absence", "negated_concept": "cat", "source": "test"}
    r.update(over)
    return r


def test_binary_and_non_utf8_files(world, tmp_path, capsys):
    png = tmp_path / "image.jsonl"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    _one_line_exit_2(capsys, ["data", "validate", str(png)], f"{png}:1: not UTF-8 text: byte 0x89 at column 1")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes((json.dumps(_rec(0)) + "\n").encode()
                      + json.dumps(_rec(1, caption="caf\u00e9"), ensure_ascii=False).encode("latin-1") + b"\n")
    _one_line_exit_2(capsys, ["data", "validate", str(latin)], f"{latin}:2: not UTF-8 text: byte 0xe9")
    args = _train_args(world, tmp_path / "o")
    args[args.index("--data") + 1] = str(latin)
    _one_line_exit_2(capsys, args, f"{latin}:2: not UTF-8 text")
    merged = tmp_path / "merged.jsonl"
    _one_line_exit_2(capsys, ["data", "merge", str(merged), str(latin)], f"{latin}:2:")
    assert not merged.exists()


def test_empty_file(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    _one_line_exit_2(capsys, ["data", "validate", str(empty)], f"{empty}:0: no records")


def test_long_and_empty_captions(world, tmp_path, capsys):
    long = _records(tmp_path, [_rec(0), _rec(1, negated_caption="a dog " * 40 + "with no cat")], "long.jsonl")
    _one_line_exit_2(capsys, ["data", "validate", str(long)], f"{long}:2: negated_caption has", "more than the encoder's 77")
    args = _train_args(world, tmp_path / "o")
    args[args.index("--data") + 1] = str(long)
    _one_line_exit_2(capsys, args, f"{long}:2: negated_caption has", "tokens, more than the encoder's 77")
    empty = _records(tmp_path, [_rec(0, caption="  ")], "empty_caption.jsonl")
    _one_line_exit_2(capsys, ["data", "validate", str(empty)], f"{empty}:1: field 'caption' must be a non-empty string")


def test_merge_with_a_bad_or_missing_input_leaves_the_output_untouched(tmp_path, capsys):
    out = _records(tmp_path, [_rec(0)], "merged.jsonl")
    before = out.read_bytes()
    good = _records(tmp_path, [_rec(1), _rec(2)], "good.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_rec(3)) + "\n{not json\n")
    _one_line_exit_2(capsys, ["data", "merge", str(out), str(good), str(bad)], f"{bad}:2: invalid JSON")
    assert out.read_bytes() == before
    _one_line_exit_2(capsys, ["data", "merge", str(out), str(good), str(tmp_path / "nope.jsonl")], "file not found")
    assert out.read_bytes() == before
    assert main(["data", "merge", str(out), str(good), str(good)]) == 0
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["x0", "x1", "x2"]


def test_train_help_lists_every_config_key(capsys):
    import dataclasses

    from negation_encoder.training import REGISTRY
    from negation_encoder.training.config import GROUPS

    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--config" in out and "JSON or YAML" in out
    keys = [f"{g}.{f.name}" for g, cls in GROUPS.items() for f in dataclasses.fields(cls)]
    keys += [f"objective.{n}.{f.name}" for n, t in REGISTRY.items() for f in dataclasses.fields(t.config_class)]
    for key in keys:
        assert f"  {key} " in out, key


def test_every_cli_option_has_help():
    import argparse

    from negation_encoder.cli import build_parser

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction):
                yield path, action

    missing = [f"{path} {a.option_strings or a.dest}" for path, a in walk(build_parser(), "negenc") if not a.help]
    assert not missing, missing


def test_no_progress_silences_library_bars(world, tmp_path, monkeypatch):
    import sys

    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as hf_logging

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)  # conftest sets it for the whole suite
    monkeypatch.setattr(sys.modules["huggingface_hub.utils.tqdm"], "HF_HUB_DISABLE_PROGRESS_BARS", None)
    enable_progress_bars()
    hf_logging.enable_progress_bar()
    assert not are_progress_bars_disabled() and hf_logging.is_progress_bar_enabled()
    assert main(_train_args(world, tmp_path / "quiet")) == 0
    assert are_progress_bars_disabled() and not hf_logging.is_progress_bar_enabled()
    assert os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == "1"


# ---- which records feed which loss term: decided by their fields, counted before compute


def test_all_bare_negations_with_infonce_stop_before_compute(world, tmp_path, capsys):
    """Captions that affirm nothing cannot train InfoNCE; a run asking for it stops instead of logging
    infonce 0.0 for every step."""
    bare = _records(tmp_path, [_rec(i, image=f"{i}.png", negated_caption="a photo with no cat here",
                                    hard_negatives=["a photo with a cat here"]) for i in range(12)], "bare.jsonl")
    out = tmp_path / "o"
    args = _train_args(world, out)
    args[args.index("--data") + 1] = str(bare)
    _one_line_exit_2(capsys, args, "infonce: no eligible record: all 12 true captions are bare negations",
                     "objective.infonce.on_bare: true")
    assert not out.exists() or not any(out.iterdir()), "something was written before the input was checked"
    # asked for explicitly, the same records train
    assert main([*args, "--set", "objective.infonce.on_bare=true"]) == 0


def test_eligibility_counts_head_the_log_and_are_printed(world, tmp_path, capsys):
    rows = [
        # a rewrite (the caption is not inside it) with foils and a distractor image
        _rec(0, image="0.png", caption="a photo of a dog on the grass", negated_caption="a dog with no cat",
             hard_negatives=["a dog with a cat"], distractor_images=["5.png"]),
        _rec(1, image="1.png", negated_caption="a photo with no cat"),  # bare: affirms nothing
        _rec(2, image="2.png", negated_caption="a photo with no dog", negation_type="presence",
             negated_concept="dog"),
        _rec(3, image="3.png", caption="a red cup", negated_caption="a cup that is not red",
             negation_type="attribute", negated_concept="red"),
    ]
    data = _records(tmp_path, rows, "mixed.jsonl")
    out = tmp_path / "counted"
    args = _train_args(world, out, "--set", *(f"objective.{t}" for t in (
        "infonce=1", "mcq=1", "omni_presence=0.5", "omni_absence=0.5", "distractor=0.5", "split_distill=0.5",
        "preserve=0.5", "preserve_embeds=0.5")))
    args[args.index("--data") + 1] = str(data)
    assert main(args) == 0
    expect = {"infonce": 3, "mcq": 2, "omni_presence": 1, "omni_absence": 2, "distractor": 1, "split_distill": 3,
              "preserve": 4, "preserve_embeds": 4}
    first = json.loads((out / "train_log.jsonl").read_text().splitlines()[0])
    assert first == {"eligible": expect, "records": 4}
    printed = capsys.readouterr().out
    assert "eligible records (of 4): infonce 3, mcq 2, omni_presence 1, omni_absence 2, distractor 1, " \
           "split_distill 3, preserve_embeds 4, preserve 4" in printed, printed
    # only enabled terms are counted
    out2 = tmp_path / "counted2"
    args2 = _train_args(world, out2, "--set", "objective.infonce=0", "objective.mcq=1")
    args2[args2.index("--data") + 1] = str(data)
    assert main(args2) == 0
    assert json.loads((out2 / "train_log.jsonl").read_text().splitlines()[0]) == {"eligible": {"mcq": 2}, "records": 4}


def test_image_sizes_go_through_the_processor_or_are_refused_before_compute(world, tmp_path, capsys):
    """A 48x48 image: a processor that resizes takes it; one that passes sizes through (do_resize false,
    as the world base once had) is refused with one line naming the image, before any compute."""
    import shutil

    from PIL import Image

    from negation_encoder.testing import tiny

    images = tmp_path / "images"
    shutil.copytree(world["images"], images)
    Image.open(images / "3.png").resize((48, 48)).save(images / "3.png")
    base = tmp_path / "base"
    shutil.copytree(world["base"], base)
    args = ["train", "--base", str(base), "--data", world["data"], "--images", str(images), "--no-progress",
            "--set", "optim.steps=2", "optim.batch_size=8", "run.save_every=2", "run.log_every=1", "--out"]
    assert main([*args, str(tmp_path / "resizes")]) == 0  # the tiny processor resizes and crops
    tiny.build_clip_image_processor(32).__class__(do_resize=False, do_center_crop=False).save_pretrained(base)
    _one_line_exit_2(capsys, [*args, str(tmp_path / "passes")], "image '3.png' is 48x48 but the model takes 32x32")
    assert not (tmp_path / "passes" / "image_cache").exists(), "computed before refusing"
