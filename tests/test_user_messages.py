"""Messages that send a new user the right way: a mistyped local path fails at once, a byte-order mark is read,
the two names of a negation type, prompts too long for the text encoder, and `--overwrite` against a run that
still holds its folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from negation_encoder.checkpoint.sources import looks_like_local_path
from negation_encoder.cli import main
from negation_encoder.data import iter_records
from negation_encoder.runio import RunFolder
from negation_encoder.testing import tiny

from ._cli_helpers import one_line

BOM = "\ufeff"
PROMPT = {"id": "t0", "prompt": "a street with no cars", "subject": "street", "negated_concepts": ["cars"],
          "negation_type": "object", "cue": "no", "questions": ["is there a street?", "is there a car?"]}
RECORD = {"id": "r0", "image": "0.png", "caption": "a photo of a dog", "negated_caption": "a photo of a dog with no cat",
          "negation_type": "absence", "negated_concept": "cat", "source": "test"}


# ---- a mistyped local path is refused at once, never looked up on the Hub


@pytest.mark.parametrize("value,local", [
    ("./runs/bse", True), ("/abs/x", True), ("~/models/x", True), ("a/b/c", True), ("runs/bse", True),
    ("openai/clip-vit-base-patch32", False), ("bert-base-uncased", False), ("", False),
])
def test_what_reads_as_a_local_path(tmp_path, monkeypatch, value, local):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()  # `runs/bse` exists partially: its first part is a folder here
    assert looks_like_local_path(value) is local


def test_mistyped_local_paths_fail_at_once_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "d.jsonl").write_text(json.dumps(RECORD) + "\n")
    (tmp_path / "p.json").write_text(json.dumps([PROMPT]))
    err = one_line(capsys, ["train", "--base", "./runs/bse", "--data", "d.jsonl", "--images", ".", "--out", "o",
                             "--no-progress"])
    assert err == ("negenc: error: --base ./runs/bse: no such folder (runs exists but holds no bse); a local path is "
                   "never looked up on the Hub (a Hub id is ORG/NAME)")
    err = one_line(capsys, ["seg", "eval", "--dataset", "jsonl", "--jsonl", "d.jsonl", "--model", "runs/clipsg",
                             "--out", "o", "--no-progress"])
    assert err.startswith("negenc: error: --model runs/clipsg: no such folder (runs exists but holds no clipsg)"), err
    err = one_line(capsys, ["eval", "--model", "~/no/such/model", "--data-root", ".", "--bench", "valse", "--out",
                             "o", "--no-progress"])
    assert err.startswith("negenc: error: --model ~/no/such/model: no such folder"), err
    for flag in ("--encoder", "--pipeline", "--judge"):
        args = {"--encoder": "runs/enc", "--pipeline": "runs/sd", "--judge": "runs/blip"}
        argv = ["t2i", "negscore", "--prompts", "p.json", "--out", "o", "--no-progress"]
        for f, v in args.items():
            argv += [f, v if f == flag else str(tmp_path)]
        err = one_line(capsys, argv)
        assert err.startswith(f"negenc: error: {flag} {args[flag]}: no such folder"), err
    assert not (tmp_path / "o").exists()


def test_a_pipeline_folder_without_a_listed_component_is_named(tmp_path, capsys):
    from diffusers import StableDiffusionPipeline

    sd = tmp_path / "sd"
    StableDiffusionPipeline(**tiny.build_sd_components(seed=0), requires_safety_checker=False).save_pretrained(sd)
    import shutil

    shutil.rmtree(sd / "text_encoder")
    (tmp_path / "p.json").write_text(json.dumps([PROMPT]))
    err = one_line(capsys, ["t2i", "negscore", "--prompts", str(tmp_path / "p.json"), "--pipeline", str(sd),
                             "--judge", str(tmp_path), "--out", str(tmp_path / "o"), "--no-progress"])
    assert err == (f"negenc: error: --pipeline {sd}: a diffusers pipeline folder (StableDiffusionPipeline) whose "
                   "model_index.json lists text_encoder, but there is no text_encoder/ folder; expected every listed "
                   "component's folder")
    err = one_line(capsys, ["t2i", "negscore", "--prompts", str(tmp_path / "p.json"), "--pipeline", str(sd),
                             "--encoder", str(sd), "--judge", str(tmp_path), "--out", str(tmp_path / "o"),
                             "--no-progress"])
    assert "--pipeline" in err  # the pipeline is checked first; as --encoder the same folder says what it is


# ---- a UTF-8 byte-order mark is read, in every input reader


def test_a_byte_order_mark_is_read_by_every_input_reader(tmp_path):
    from eval_seg.datasets import DatasetConfig, load_dataset
    from eval_t2i.prompts import load_prompts
    from eval_t2i.tifa import load_tifa_questions
    from negation_encoder.data.referring import read_referring
    from negation_encoder.eval.datasets import _csv_rows, _read_json

    records = tmp_path / "r.jsonl"
    records.write_text(BOM + json.dumps(RECORD) + "\n", encoding="utf-8")
    assert [r.id for r in iter_records(records)] == ["r0"]
    referring = tmp_path / "ref.jsonl"
    referring.write_text(BOM + json.dumps({"id": "x", "image": "0.png", "text": "the dog", "mask": "0_mask.png"})
                         + "\n", encoding="utf-8")
    assert [r.id for r in read_referring(referring)] == ["x"]
    prompts = tmp_path / "p.json"
    prompts.write_text(BOM + json.dumps([PROMPT]), encoding="utf-8")
    assert load_prompts(prompts).items[0].id == "t0"
    csv = tmp_path / "split.csv"
    csv.write_text(BOM + "Prompts,Affirmative,Negated\na street with no cars,a street,cars\n", encoding="utf-8")
    assert load_prompts(csv).items[0].prompt == "a street with no cars"
    qa = tmp_path / "qa.json"
    qa.write_text(BOM + json.dumps([{"id": "c0", "caption": "a dog", "question": "is there a dog?",
                                     "choices": ["yes", "no"], "answer": "yes", "element_type": "object"}]),
                  encoding="utf-8")
    assert load_tifa_questions(qa)[0].caption == "a dog"
    bench = tmp_path / "bench.json"
    bench.write_text(BOM + json.dumps({"a": 1}), encoding="utf-8")
    assert _read_json(bench) == {"a": 1}
    bench_csv = tmp_path / "bench.csv"
    bench_csv.write_text(BOM + "image,caption\n1.png,a dog\n", encoding="utf-8")
    assert [row for _, row in _csv_rows(bench_csv, ("image", "caption"))] == [{"image": "1.png", "caption": "a dog"}]
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "im.png")
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "m.png")
    seg = tmp_path / "seg.jsonl"
    seg.write_text(BOM + json.dumps({"id": "s", "image": "im.png", "text": "a dog", "mask": "m.png"}) + "\n",
                   encoding="utf-8")
    assert [s.id for s in load_dataset(DatasetConfig(kind="jsonl", jsonl=str(seg))).samples] == ["s"]


def test_negenc_data_validate_reads_a_file_with_a_byte_order_mark(tmp_path, capsys):
    f = tmp_path / "r.jsonl"
    f.write_text(BOM + json.dumps(RECORD) + "\n", encoding="utf-8")
    assert main(["data", "validate", str(f)]) == 0, capsys.readouterr().err
    assert "utf-8-sig" not in capsys.readouterr().err


# ---- negation types: one table between records and prompt files


def test_a_prompt_file_reads_a_records_name_and_lists_both_vocabularies(tmp_path):
    from eval_t2i.prompts import load_prompts
    from negation_encoder.errors import InputError

    f = tmp_path / "p.json"
    f.write_text(json.dumps([dict(PROMPT, negation_type="absence")]))
    assert load_prompts(f).items[0].negation_type == "object"
    f.write_text(json.dumps([dict(PROMPT, negation_type="presence")]))
    with pytest.raises(InputError) as e:
        load_prompts(f)
    assert str(e.value) == (f"{f}: entry 0 (id 't0'): 'negation_type' must be one of object, attribute, action, "
                            "relation, scene, none, or a record's name for one: absence (= object); got 'presence'")


def test_a_record_with_the_prompt_files_name_says_which_name_it_means(tmp_path):
    from negation_encoder.data.records import RecordError

    f = tmp_path / "r.jsonl"
    f.write_text(json.dumps(dict(RECORD, negation_type="object")) + "\n")
    with pytest.raises(RecordError) as e:
        list(iter_records(f))
    assert str(e.value).endswith("field 'negation_type' must be one of absence|presence|attribute|action|relation, "
                                 "got 'object' (the t2i prompt files' name; a record says 'absence')"), e.value


def test_t2i_doc_lists_every_allowed_negation_type():
    from eval_t2i.prompts import NEGATION_TYPES
    from negation_encoder.data.records import NEGATION_TYPES as RECORD_TYPES

    doc = (Path(__file__).resolve().parents[1] / "docs" / "t2i.md").read_text(encoding="utf-8")
    section = doc[doc.index("### Negation types"):]
    for name in (*NEGATION_TYPES, *RECORD_TYPES):
        assert f"`{name}`" in section, name


# ---- prompts longer than the text encoder's window: one warning line


def _long_prompts(path: Path) -> None:
    long = "a " + " ".join(["very"] * 90) + " big street with no cars"
    path.write_text(json.dumps([PROMPT, dict(PROMPT, id="t1", prompt=long), dict(PROMPT, id="t2", prompt=long)]))


def test_validate_warns_once_about_prompts_the_encoder_will_truncate(tmp_path, capsys):
    from diffusers import StableDiffusionPipeline

    sd = tmp_path / "sd"
    StableDiffusionPipeline(**tiny.build_sd_components(seed=0), requires_safety_checker=False).save_pretrained(sd)
    _long_prompts(tmp_path / "p.json")
    assert main(["t2i", "validate", str(tmp_path / "p.json"), "--tokenizer", str(sd)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("negenc: warning: 2 of 3 prompts exceed the text encoder's 77 tokens and will be "
                             "truncated (only the first 77 tokens are read); the first: t1 ("), err


@pytest.mark.slow
def test_generation_warns_once_and_the_pipeline_prints_no_truncated_tail(tmp_path):
    """In a subprocess, as a user sees it: the pipelines' own notes go to handlers pytest does not capture."""
    from diffusers import StableDiffusionPipeline

    StableDiffusionPipeline(**tiny.build_sd_components(seed=0),
                            requires_safety_checker=False).save_pretrained(tmp_path / "sd")
    model, processor = tiny.build_blip_vqa(seed=0)
    model.save_pretrained(tmp_path / "blip")
    processor.save_pretrained(tmp_path / "blip")
    _long_prompts(tmp_path / "p.json")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "warning",
           "DIFFUSERS_VERBOSITY": "warning"}
    run = subprocess.run([sys.executable, "-m", "negation_encoder.cli", "t2i", "negscore", "--prompts",
                          str(tmp_path / "p.json"), "--pipeline", str(tmp_path / "sd"), "--judge", str(tmp_path / "blip"),
                          "--arms", "base", "--seeds", "0", "--steps", "1", "--height", "32", "--width", "32",
                          "--resamples", "10", "--no-progress", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "<|endoftext|>" not in run.stderr and "was truncated" not in run.stderr, run.stderr[-2000:]
    warnings = [x for x in run.stderr.splitlines() if "exceed the text encoder" in x]
    assert len(warnings) == 1 and "2 of 3 prompts" in warnings[0] and "the first: t1" in warnings[0], run.stderr


# ---- --overwrite takes the folder's lock before removing anything


def _hold_lock(folder: Path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time, filelock; l = filelock.FileLock(sys.argv[1]); "
                               "l.acquire(); print('held', flush=True); time.sleep(60)", str(folder / ".negenc.lock")],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_overwrite_is_refused_while_another_run_holds_the_folder(tmp_path):
    from negation_encoder.errors import InputError

    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    folder = RunFolder(out, ("metrics.json",))
    holder = _hold_lock(out)
    try:
        with pytest.raises(InputError) as e:
            folder.prepare(overwrite=True)
        assert str(e.value) == (f"--out {out}: another run is using this folder (it holds {out / '.negenc.lock'}); "
                                "wait for it to finish")
        assert (out / "metrics.json").read_text() == "{}", "the overwrite removed a running run's file"
    finally:
        holder.kill()
        holder.wait()
    with folder.lock():  # this process holds it: its own overwrite goes through (the lock is re-entrant)
        folder.prepare(overwrite=True)
    assert not (out / "metrics.json").exists()


def test_seg_overwrite_does_not_remove_a_resumed_runs_files(tmp_path, capsys):
    tok = tiny.build_clip_tokenizer()
    tiny.build_clipseg(seed=0, projection_dim=24).save_pretrained(tmp_path / "clipseg")
    tok.save_pretrained(tmp_path / "clipseg")
    tiny.build_clip_image_processor(32).save_pretrained(tmp_path / "clipseg")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "im.png")
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(tmp_path / "m.png")
    (tmp_path / "seg.jsonl").write_text(json.dumps({"image": "im.png", "text": "a dog", "mask": "m.png"}) + "\n")
    out = tmp_path / "o"
    argv = ["seg", "eval", "--dataset", "jsonl", "--jsonl", str(tmp_path / "seg.jsonl"), "--model",
            str(tmp_path / "clipseg"), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    before = (out / "samples.jsonl").read_bytes()
    holder = _hold_lock(out)  # a `--resume` of this folder still running in another process
    try:
        err = one_line(capsys, [*argv, "--overwrite"])
        assert err == f"negenc: error: --out {out}: another run is using this folder (it holds " \
                      f"{out / '.negenc.lock'}); wait for it to finish"
        assert (out / "samples.jsonl").read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
    assert main([*argv, "--overwrite"]) == 0


def test_testbed_demo_and_seg_compare_hold_their_folder_for_the_whole_run(tmp_path):
    """The demo and seg-compare take their folder's lock before any compute and keep it to the end, so a second
    run into a folder another process is using is one line, not two runs interleaving their files."""
    from transformers import CLIPConfig, CLIPTextConfig

    from negation_encoder.errors import InputError
    from negation_testbed.demo import run_demo
    from negation_testbed.drop_in.seg_compare import SegCompareConfig, seg_compare

    encoder = tmp_path / "encoder"  # the checkpoint layout's configs: checked before the lock, never loaded
    CLIPConfig().save_pretrained(encoder)
    CLIPTextConfig().save_pretrained(encoder / "text_encoder")
    for name in ("demo", "seg"):
        out = tmp_path / name
        out.mkdir()
        holder = _hold_lock(out)
        try:
            with pytest.raises(InputError, match="another run is using this folder"):
                if name == "demo":
                    run_demo(out=out, progress=False)
                else:
                    seg_compare(SegCompareConfig(encoders=(str(encoder),), out=str(out), progress=False))
            assert not (out / "world").exists() and not (out / "data").exists(), "work started before the lock"
        finally:
            holder.kill()
            holder.wait()
