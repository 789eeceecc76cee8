"""Neg Score and TIFA end to end on a tiny SD pipeline and tiny judges, all saved and reloaded."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from eval_t2i.api import T2IConfig
from eval_t2i.generation import ArmSwitcher, GenerationConfig, load_pipeline
from eval_t2i.judges import BlipJudge, VLMJudge
from eval_t2i.negscore import NegScoreConfig, run_negscore
from eval_t2i.prompts import load_prompts
from eval_t2i.runner import prepare_out_dir
from negation_encoder.cli import build_parser, main
from negation_encoder.configs import config_from_args
from negation_encoder.testing import tiny

from ._shard_worlds import QA  # the TIFA questions both worlds use

PROMPTS = [{"id": f"t{i}", "prompt": p, "subject": s, "negated_concepts": [n], "negation_type": k, "cue": c,
            "questions": [f"is there a {s}?", f"is there a {n}?"]}
           for i, (p, s, n, k, c) in enumerate([("a street with no cars", "street", "cars", "object", "no"),
                                                ("a dog not running", "dog", "running", "action", "not"),
                                                ("a table without a cup", "table", "cup", "object", "without")])]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from diffusers import StableDiffusionPipeline
    from transformers import BertTokenizer, BlipProcessor

    root = tmp_path_factory.mktemp("t2i")
    StableDiffusionPipeline(**tiny.build_sd_components(seed=0), requires_safety_checker=False).save_pretrained(root / "sd")
    tok = tiny.build_clip_tokenizer()
    tiny.build_clip_text_model(seed=5, tokenizer=tok).save_pretrained(root / "enc" / "text_encoder")
    tiny.build_clip_text_model(seed=5, tokenizer=tok, text_hidden_size=48).save_pretrained(root / "wide" / "text_encoder")
    tiny.build_non_clip_text_model("t5").save_pretrained(root / "t5")
    model, processor = tiny.build_blip_vqa(seed=0)
    model.save_pretrained(root / "blip")
    processor.save_pretrained(root / "blip")
    words = [w for w in processor.tokenizer.get_vocab() if w not in ("yes", "no")]
    nono = BlipProcessor(image_processor=processor.image_processor, tokenizer=BertTokenizer(vocab={w: i for i, w in enumerate(words)}))
    model.save_pretrained(root / "blip_noyes")
    nono.save_pretrained(root / "blip_noyes")
    (root / "prompts.json").write_text(json.dumps(PROMPTS))
    (root / "qa.json").write_text(json.dumps(QA))
    return root


def _args(world, out, *extra):
    return ["t2i", "negscore", "--prompts", str(world / "prompts.json"), "--pipeline", str(world / "sd"),
            "--encoder", str(world / "enc"), "--judge", str(world / "blip"), "--seeds", "0,1", "--arms", "base,swapped",
            "--steps", "2", "--height", "32", "--width", "32", "--no-progress", "--resamples", "200", "--out", str(out),
            *extra]


def _pixels(out):
    return {p.relative_to(out).as_posix(): np.asarray(Image.open(p)) for p in sorted((out / "images").rglob("*.png"))}


def _summary(out):
    s = json.loads((out / "summary.json").read_text())
    s.pop("run")
    return s


def _same_images(pa: dict, pb: dict, what: str) -> None:
    """The same noise per image whatever the batch: equal up to float reordering in batched GEMMs (which
    depends on the batch's shape and the thread count), far below what a seed changes (> 5 on average)."""
    assert list(pa) == list(pb)
    for k in pa:
        diff = np.abs(pa[k].astype(int) - pb[k].astype(int))
        assert diff.max() <= 2 and diff.mean() < 0.05, f"{k} differs between {what} (max {diff.max()})"


def test_negscore_end_to_end_batch_invariant_and_resumable(world, tmp_path, capsys):
    a, b = tmp_path / "batch3", tmp_path / "batch1"
    assert main(_args(world, a, "--batch-size", "3")) == 0
    assert "| swapped |" in capsys.readouterr().out
    records = [json.loads(line) for line in (a / "images.jsonl").read_text().splitlines()]
    assert len(records) == 12 and {r["arm"] for r in records} == {"base", "swapped"}
    summary = json.loads((a / "summary.json").read_text())
    by_hand = np.mean([int(r["probabilities"][0] > 0.5 and r["probabilities"][1] <= 0.5)
                       for r in records if r["arm"] == "base"])
    assert summary["arms"]["base"]["neg_score"] == pytest.approx(by_hand)
    assert summary["arms"]["swapped"]["n_images"] == 6 and "swapped - base" in summary["paired"]
    assert (a / "grid.png").exists() and "Neg Score" in (a / "report.md").read_text()

    assert main(_args(world, b, "--batch-size", "1")) == 0
    pa, pb = _pixels(a), _pixels(b)
    assert list(pa) == list(pb) and len(pa) == 12
    _same_images(pa, pb, "batch size 3 and 1")
    seed_gap = np.abs(pa["images/base/t0_s0.png"].astype(int) - pa["images/base/t0_s1.png"].astype(int)).mean()
    assert seed_gap > 5, seed_gap
    assert not np.array_equal(pa["images/base/t0_s0.png"], pa["images/swapped/t0_s0.png"]), "swap changed nothing"
    assert not np.array_equal(pa["images/base/t0_s0.png"], pa["images/base/t0_s1.png"]), "seeds gave one image"

    # interrupted run: stop after 5 images, tear the last line, resume through the CLI
    c = tmp_path / "killed"
    assert main(["t2i", "negscore", "--prompts", str(world / "prompts.json"), "--pipeline", str(world / "sd"),
                 "--judge", str(world / "blip"), "--out", str(c), "--seeds", "0", "--steps", "2", "--height", "32",
                 "--width", "32", "--no-progress"]) == 0  # a different run already there: refused without flags
    assert main(_args(world, c, "--batch-size", "2")) == 2
    assert "already holds results" in capsys.readouterr().err
    assert main(_args(world, c, "--batch-size", "2", "--resume")) == 2  # settings differ from the run there
    assert "--resume" in capsys.readouterr().err

    d = tmp_path / "interrupted"
    d.mkdir()

    parser = build_parser()
    parsed = parser.parse_args(_args(world, d, "--batch-size", "2"))
    cfg = config_from_args(T2IConfig, parsed, progress=False)
    prepare_out_dir(d, cfg.fingerprint(), False, False)
    judge = BlipJudge(str(world / "blip"))
    switcher = ArmSwitcher(load_pipeline(str(world / "sd"), torch.device("cpu"), torch.float32), str(world / "enc"))
    seen = []

    def kill_after_five(record):
        seen.append(record["image"])
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_negscore(load_prompts(world / "prompts.json").items, switcher, judge, d,
                     NegScoreConfig(seeds=(0, 1), arms=("base", "swapped"), batch_size=2, progress=False),
                     GenerationConfig(steps=2, height=32, width=32), on_record=kill_after_five)
    with (d / "images.jsonl").open("a") as f:
        f.write('{"arm": "base", "key": "t2", "se')
    finished = {p: (d / p).stat().st_mtime_ns for p in seen}
    assert main(_args(world, d, "--batch-size", "2", "--resume")) == 0
    assert "7 images generated, 5 already finished" in capsys.readouterr().out
    assert {p: (d / p).stat().st_mtime_ns for p in seen} == finished, "a finished image was regenerated"
    assert len((d / "images.jsonl").read_text().splitlines()) == 12
    assert _summary(d) == _summary(a)
    _same_images(_pixels(d), pa, "resumed and uninterrupted runs")


def test_bad_inputs_exit_2_with_one_line_before_generation(world, tmp_path, capsys):
    bad_prompts = tmp_path / "bad.json"
    bad_prompts.write_text(json.dumps([PROMPTS[0], {"id": "z"}]))
    cases = [
        (["--prompts", str(bad_prompts)], f"{bad_prompts}: entry 1 (id 'z'): 'prompt'"),
        (["--judge", str(world / "blip_noyes")], "has no single-token 'yes' and 'no'"),
        (["--encoder", str(world / "wide")], "does not fit --pipeline (text encoder hidden size 48 does not match"),
        (["--encoder", str(world / "t5")], f"--encoder {world / 't5'}: a T5EncoderModel folder (model_type 't5'), "
                                           "not a CLIP text tower; expected a CLIPModel folder"),
    ]
    for i, (override, fragment) in enumerate(cases):
        args = _args(world, tmp_path / f"out{i}")
        for flag, value in zip(override[::2], override[1::2], strict=True):
            args[args.index(flag) + 1] = value
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], err
        assert not (tmp_path / f"out{i}" / "images").exists(), "generated before refusing"


def test_tifa_end_to_end_matches_hand_aggregation(world, tmp_path, capsys):
    out = tmp_path / "tifa"
    assert main(["t2i", "tifa", "--questions", str(world / "qa.json"), "--pipeline", str(world / "sd"), "--encoder",
                 str(world / "enc"), "--judge", str(world / "blip"), "--seeds", "0,1", "--steps", "2", "--height", "32",
                 "--width", "32", "--no-progress", "--out", str(out)]) == 0
    summary = json.loads((out / "tifa_summary.json").read_text())
    records = [json.loads(line) for line in (out / "tifa_images.jsonl").read_text().splitlines()]
    assert len(records) == 8  # 2 captions x 2 seeds x 2 arms
    for arm in ("base", "swapped"):
        rows = [q for r in records if r["arm"] == arm for q in r["questions"]]
        for q in rows:  # the choice is the argmax of its own likelihoods, correct iff it is the answer
            assert q["choice"] == QA[[x["question"] for x in QA].index(q["question"])]["choices"][
                int(np.argmax(q["log_likelihoods"]))]
            assert q["correct"] == int(q["choice"] == q["answer"])
        per_caption = [np.mean([q["correct"] for q in rows if q["id"] == c]) for c in ("c1", "c2")]
        assert summary["arms"][arm]["tifa_average"] == pytest.approx(np.mean(per_caption))
    assert "choice likelihood" in capsys.readouterr().out


def test_judges_batched_equal_one_by_one_and_reload(world, tmp_path):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(4)]
    questions = ["is there a dog?", "is the cat red?", "a car?", "is there a man with a hat here?"]
    blip = BlipJudge(str(world / "blip"), batch_size=3)
    batched = blip.yes_probability(images, questions)
    assert batched == pytest.approx([blip.yes_probability([i], [q])[0] for i, q in zip(images, questions, strict=True)],
                                    abs=1e-6)  # no padding leak (it moved answers by ~1e-4 before bucketing)
    # independent route: BLIP's own generate() takes the argmax first token; our p > 0.5 must agree
    # whenever that token is yes or no
    model, processor = blip.model, blip.processor
    for image, q, p in zip(images, questions, batched, strict=True):
        enc = processor(images=image, text=q, return_tensors="pt")
        first = model.generate(**enc, max_new_tokens=1, output_scores=True, return_dict_in_generate=True).scores[0][0]
        ref = first.softmax(-1)
        yes, no = ref[blip.yes_ids].sum(), ref[blip.no_ids].sum()
        assert p == pytest.approx(float(yes / (yes + no)), abs=1e-5)

    model, processor = tiny.build_vision_chat_lm(seed=0)
    model.save_pretrained(tmp_path / "llava")
    processor.save_pretrained(tmp_path / "llava")
    vlm = VLMJudge(str(tmp_path / "llava"), batch_size=3)
    direct = VLMJudge(model, processor)
    assert vlm.yes_probability(images, questions) == pytest.approx(direct.yes_probability(images, questions), abs=1e-6)
    one = [vlm.yes_probability([i], [q])[0] for i, q in zip(images, questions, strict=True)]
    assert vlm.yes_probability(images, questions) == pytest.approx(one, abs=1e-5)
    choices = [["yes", "no"], ["red", "blue", "green"], ["yes", "no"], ["a hat", "a cup"]]
    ll = vlm.choice_likelihood(images, questions, choices)
    assert [len(x) for x in ll] == [2, 3, 2, 2] and all(v < 0 for row in ll for v in row)
    single = [vlm.choice_likelihood([images[1]], [questions[1]], [[c]])[0][0] for c in choices[1]]
    assert single != ll[1]  # the choices listed in the prompt differ, so the likelihoods must too


def test_compare_runs_all_five_arms_with_paired_differences(world, tmp_path, capsys):
    out = tmp_path / "compare"
    args = _args(world, out, "--batch-size", "6", "--limit", "2")
    args[1] = "compare"
    del args[args.index("--arms"): args.index("--arms") + 2]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["arms"]) == ["base", "base+negprompt", "omit", "swapped", "swapped+negprompt"]
    assert set(summary["paired"]) == {"base+negprompt - base", "omit - base", "swapped - base",
                                      "swapped+negprompt - base"}
    records = [json.loads(line) for line in (out / "images.jsonl").read_text().splitlines()]
    neg = {(r["arm"], r["key"]): (r["prompt_used"], r["negative_prompt"]) for r in records}
    assert neg[("base+negprompt", "t0")] == ("a street", "cars")
    assert neg[("swapped+negprompt", "t0")] == ("a street with no cars", "cars")  # stacked: the prompt as written
    assert neg[("base", "t0")] == ("a street with no cars", None)
    assert neg[("omit", "t0")] == ("a street", None)
    assert "| swapped+negprompt |" in capsys.readouterr().out


def test_no_progress_silences_every_bar(world, tmp_path):
    """A real process, with no progress setting inherited: bars without the flag (so the check can fail),
    none with it, from our runner, transformers' weight loading and diffusers' pipeline loading alike."""
    import os
    import re
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")}
    env["OMP_NUM_THREADS"] = "1"
    bar = re.compile(r"\d+%\|| \d+/\d+ \[|it/s\]|s/it\]")

    def stderr(out, quiet):
        argv = [a for a in _args(world, out) if quiet or a != "--no-progress"]
        done = subprocess.run([sys.executable, "-m", "negation_encoder", *argv, "--limit", "1", "--seeds", "0"],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stderr

    loud = stderr(tmp_path / "loud", quiet=False)
    assert bar.search(loud), "no progress bar without --no-progress: this test cannot see bars"
    quiet = stderr(tmp_path / "quiet", quiet=True)
    assert not bar.search(quiet), f"a bar survived --no-progress:\n{quiet[-1500:]}"


def test_a_read_only_out_is_one_line_exit_1(world, tmp_path, monkeypatch, capsys):
    """Root ignores chmod: the read-only mount is simulated where mkdir meets it (naming the path)."""
    from ._cli_helpers import read_only

    out = tmp_path / "ro"
    read_only(monkeypatch, out)
    assert main(_args(world, out)) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"negenc: run failed: {out}: Read-only file system [EROFS]", err
