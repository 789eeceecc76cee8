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
    cfg = {"steps": 2, "batch_size": 8, "lr": 1e-3, "warmup_steps": 1, "save_every": 1, "log_every": 1,
           "cache_dir": str(root / "cache")}
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


def _config_file(tmp_path, w, **over):
    cfg = json.loads(open(w["cfg"]).read())
    cfg.update(over)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    return str(path)


# ---- config values: the wrong type is named, never silently accepted


@pytest.mark.parametrize("key,value,needle", [
    ("hard_negatives", "no", "key 'hard_negatives' expects bool, got str \"no\""),
    ("hard_negatives", "false", "key 'hard_negatives' expects bool, got str"),
    ("steps", "six", "key 'steps' expects int, got str"),
    ("steps", 6.5, "key 'steps' expects int, got float 6.5"),
    ("mcq", "lots", "key 'mcq' expects float, got str"),
    ("layers", 3, "key 'layers' expects str, got int 3"),
    ("data", 5, "key 'data' expects list[str], got int 5"),
    ("layers", "front:x", "layers must be all, front:K, back:K or a comma list"),
    ("layers", "back:-1", "layers must be all, front:K, back:K or a comma list"),
    ("layers", "front:99", "config key 'layers'"),
    ("layers", "0,99", "indices [99] out of range for 2 layers"),
    ("distractor_types", ["colour"], "distractor_types must name negation types (absence|presence|"),
    ("distractor_sources", [""], "distractor_sources must be non-empty source names, got ['']"),
])
def test_bad_config_values_are_one_line_before_any_compute(world, tmp_path, capsys, key, value, needle):
    out = tmp_path / "fresh"
    _one_line_exit_2(capsys, _train_args(world, out, config=_config_file(tmp_path, world, **{key: value})), needle)
    assert not out.exists() or not any(out.iterdir()), "something was written before the input was checked"


def test_set_nan_lr_is_refused(world, tmp_path, capsys):
    _one_line_exit_2(capsys, _train_args(world, tmp_path / "o", "--set", "lr=nan"), "lr must be a finite number, got nan")
    _one_line_exit_2(capsys, _train_args(world, tmp_path / "o", "--set", "steps=2.5"), "key 'steps' expects int, got '2.5'")


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
    (["--set", "lr=0.5"], "lr (0.001 -> 0.5)"),
    (["--set", "layers=front:1"], "layers ('all' -> 'front:1')"),
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

    cfg = TrainConfig(base="b", data=["d.jsonl"], images="i", out="o")
    saved = {k: v for k, v in cfg.to_dict().items() if k != "distractor_sources"}
    assert resume_conflicts(saved, cfg) == []
    changed = TrainConfig(base="b", data=["d.jsonl"], images="i", out="o", distractor_sources=["crops"])
    assert resume_conflicts(saved, changed) == ["distractor_sources ([] -> ['crops'])"]


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
    assert main(_train_args(world, out, "--overwrite", "--set", "steps=3", "save_every=3")) == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_3"]
    assert _log_steps(out) == [1, 2, 3]
    assert json.loads((out / "model" / "training_config.json").read_text())["steps"] == 3


# ---- the base model


@pytest.mark.parametrize("builder,model_type", [
    (lambda: tiny.build_clip_text_model(seed=0), "clip_text_model"),
    (lambda: tiny.build_clipseg(seed=0), "clipseg"),
])
def test_base_that_is_not_a_clipmodel(world, tmp_path, capsys, builder, model_type):
    base = tmp_path / "notclip"
    builder().save_pretrained(base)
    args = _train_args(world, tmp_path / "o")
    args[args.index("--base") + 1] = str(base)
    _one_line_exit_2(capsys, args, f"expected a CLIPModel checkpoint (model_type 'clip'), got model_type '{model_type}'")


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

    from negation_encoder.training import TrainConfig

    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--config" in out and "JSON or YAML" in out
    for f in dataclasses.fields(TrainConfig):
        assert f"  {f.name} " in out, f.name


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
                     "infonce_on_bare: true")
    assert not out.exists() or not any(out.iterdir()), "something was written before the input was checked"
    # asked for explicitly, the same records train
    assert main([*args, "--set", "infonce_on_bare=true"]) == 0


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
    args = _train_args(world, out, "--set", "infonce=1", "mcq=1", "omni_presence=0.5", "omni_absence=0.5",
                       "distractor=0.5", "split_distill=0.5", "preserve=0.5", "preserve_embeds=0.5")
    args[args.index("--data") + 1] = str(data)
    assert main(args) == 0
    expect = {"infonce": 3, "mcq": 2, "omni_presence": 1, "omni_absence": 2, "distractor": 1, "split_distill": 3,
              "preserve": 4, "preserve_embeds": 4}
    first = json.loads((out / "train_log.jsonl").read_text().splitlines()[0])
    assert first == {"eligible": expect, "records": 4}
    printed = capsys.readouterr().out
    assert "eligible records (of 4): infonce 3, mcq 2, omni_presence 1, omni_absence 2, distractor 1, " \
           "split_distill 3, preserve 4, preserve_embeds 4" in printed, printed
    # only enabled terms are counted
    out2 = tmp_path / "counted2"
    args2 = _train_args(world, out2, "--set", "infonce=0", "mcq=1")
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
            "--set", "steps=2", "batch_size=8", "save_every=2", "log_every=1", "--out"]
    assert main([*args, str(tmp_path / "resizes")]) == 0  # the tiny processor resizes and crops
    tiny.build_clip_image_processor(32).__class__(do_resize=False, do_center_crop=False).save_pretrained(base)
    _one_line_exit_2(capsys, [*args, str(tmp_path / "passes")], "image '3.png' is 48x48 but the model takes 32x32")
    assert not (tmp_path / "passes" / "image_cache").exists(), "computed before refusing"
