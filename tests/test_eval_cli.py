"""`negenc eval` in-process on a fixture data root: results, predictions, summary, image cache, the
model card built from the results by `negenc publish --dry-run`, and one-line errors on bad input."""

import json
import shutil

import pytest

from negation_encoder.cli import main
from negation_encoder.eval.paths import BENCHMARKS

from ._eval_fixtures import write_data_root, write_model

ALL = ",".join(BENCHMARKS)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval_cli")
    return write_data_root(base / "data"), write_model(base / "model")


def _run(model, root, out, *extra: str) -> int:
    return main(["eval", "--model", str(model), "--data-root", str(root), "--out", str(out), "--no-progress",
                 "--batch-size", "4", "--device", "cpu", *extra])


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, f"expected one stderr line, got:\n{err}"
    return err


def test_eval_writes_results_predictions_summary_and_the_card(setup, tmp_path, capsys):
    from huggingface_hub import ModelCard

    root, model = setup
    out = tmp_path / "out"
    assert _run(model, root, out, "--bench", ALL) == 0
    res = json.loads((out / "eval_results.json").read_text())
    expected_items = {"valse_existence_items": 4, "negrefcocog_items": 3, "negbench_mcq_coco_items": 4,
                      "negbench_mcq_voc_items": 3, "negbench_negated_items": 8, "negbench_plain_items": 8,
                      "coco_items": 6, "zeroshot_items": 6}
    assert {k: res[k] for k in expected_items} == expected_items
    assert res["schema"] == "negation-encoder/eval-results/v1"

    def rows(bench, part=None):
        got = [json.loads(r) for r in (out / "predictions" / f"{bench}.jsonl").read_text().splitlines()]
        return [r for r in got if part is None or r["set"] == part]

    def mean(xs):
        return sum(xs) / len(xs)

    # every headline number again from the per-item predictions (a second route to the same result)
    assert res["negrefcocog"] == pytest.approx(mean([r["correct"] for r in rows("negrefcocog")]))
    for src in ("coco", "voc"):
        mcq = rows(f"negbench-mcq-{src}")
        assert res[f"negbench_mcq_{src}"] == pytest.approx(mean([r["correct"] for r in mcq]))
        neg = [r["correct"] for r in mcq if r["template"] == "negative"]
        assert res[f"negbench_mcq_{src}_negative"] == pytest.approx(mean(neg))
    assert res["negbench_negated_r5"] == pytest.approx(mean([r["rank"] < 5 for r in rows("negbench-retrieval",
                                                                                        "negbench_negated")]))
    assert res["coco_r1"] == pytest.approx(mean([r["rank"] < 1 for r in rows("coco-retrieval")]))
    assert res["zeroshot_top1"] == pytest.approx(mean([r["correct"] for r in rows("zeroshot")]))
    meta = res["meta"]
    assert meta["split_scoring"] is False and meta["split_scorer"] is None
    assert meta["data_root"] == str(root) and meta["skipped"] == dict.fromkeys(meta["benchmarks"], 0)
    assert meta["benchmarks"]["negbench_mcq_voc"]["images"] == str(root / "voc2007/JPEGImages")
    assert meta["image_cache"]["computed"] > 0
    for bench in BENCHMARKS:
        rows = (out / "predictions" / f"{bench}.jsonl").read_text().splitlines()
        assert rows, bench
    valse_rows = [json.loads(r) for r in (out / "predictions/valse.jsonl").read_text().splitlines()]
    assert sum(r["correct"] for r in valse_rows) / len(valse_rows) == pytest.approx(res["valse_existence"])
    assert "| `coco_r5` | COCO Karpathy test | Recall@5 |" in (out / "summary.md").read_text()

    # the card: copy the results into the encoder folder and publish dry-run
    shutil.copy(out / "eval_results.json", model / "eval_results.json")
    try:
        capsys.readouterr()
        assert main(["publish", str(model), "--repo-id", "org/x", "--dry-run"]) == 0
        printed = capsys.readouterr().out
        card = ModelCard(printed.split("--- README.md ---\n", 1)[1])  # a dry run writes nothing; it prints the card
    finally:
        (model / "eval_results.json").unlink()
    by_name = {(r.dataset_name, r.metric_name): r for r in card.data.eval_results}
    assert by_name[("VALSE existence", "pairwise accuracy (acc_r)")].metric_value == round(res["valse_existence"], 4)
    assert by_name[("NegRefCOCOg", "accuracy")].metric_value == round(res["negrefcocog"], 4)
    assert by_name[("NegBench MCQ VOC2007", "accuracy (negative template)")].metric_value == \
        round(res["negbench_mcq_voc_negative"], 4)
    assert by_name[("NegBench negated retrieval COCO (val2017)", "Recall@5")].metric_value == \
        round(res["negbench_negated_r5"], 4)
    assert by_name[("COCO Karpathy test", "Recall@5")].dataset_type == "yerevann/coco-karpathy"
    assert by_name[("ImageNet-style zero-shot", "top-1 accuracy")].metric_value == round(res["zeroshot_top1"], 4)
    assert not any(r.metric_name.endswith("_items") for r in card.data.eval_results), "counts are not metrics"


def test_second_run_reuses_the_image_cache_and_split_scoring_is_recorded(setup, tmp_path):
    root, model = setup
    cache = tmp_path / "cache"
    assert _run(model, root, tmp_path / "a", "--bench", "valse,negbench-mcq-voc", "--cache-dir", str(cache)) == 0
    assert _run(model, root, tmp_path / "b", "--bench", "valse,negbench-mcq-voc", "--cache-dir", str(cache),
                "--split-scoring", "--split-weight", "0.5") == 0
    a = json.loads((tmp_path / "a/eval_results.json").read_text())
    b = json.loads((tmp_path / "b/eval_results.json").read_text())
    assert a["meta"]["image_cache"]["computed"] == 7 and b["meta"]["image_cache"] == {
        "dir": a["meta"]["image_cache"]["dir"], "computed": 0, "cached": 7}
    assert b["meta"]["split_scoring"] is True and b["meta"]["split_scorer"]["weight"] == 0.5
    scores_a = [json.loads(r)["score_caption"] for r in (tmp_path / "a/predictions/valse.jsonl").open()]
    plain_b = [json.loads(r)["score_caption"] for r in (tmp_path / "b/predictions/valse.jsonl").open()]
    scores_b = [json.loads(r)["score_caption"] for r in (tmp_path / "b/predictions/valse.split.jsonl").open()]
    assert plain_b == pytest.approx(scores_a), "the flat keys and predictions stay plain cosine"
    assert {k: b[k] for k in ("valse_existence", "negbench_mcq_voc")} == {
        k: a[k] for k in ("valse_existence", "negbench_mcq_voc")}
    assert set(b["split"]) >= {"valse_existence", "negbench_mcq_voc"} and "split" not in a
    assert scores_a[1] == pytest.approx(scores_b[1]), "a caption with no negation scores as plain CLIP"
    assert scores_a[0] != pytest.approx(scores_b[0]), "'There are no dogs.' must be scored by the split scorer"
    assert "| split scorer |" in (tmp_path / "b/summary.md").read_text()


@pytest.fixture
def root_copy(setup, tmp_path):
    root, model = setup
    return shutil.copytree(root, tmp_path / "data"), model


def test_missing_image_is_one_line_naming_file_and_row_then_skippable(root_copy, tmp_path, capsys):
    root, model = root_copy
    (root / "voc2007/JPEGImages/000202.jpg").unlink()
    assert _run(model, root, tmp_path / "o", "--bench", "negbench-mcq-voc") == 2
    line = _error_line(capsys)
    assert f"{root / 'negbench/VOC2007_mcq.csv'}:3: image" in line and "000202.jpg" in line and "not found" in line
    assert not (tmp_path / "o").exists(), "nothing may be computed or written before inputs are checked"
    assert _run(model, root, tmp_path / "o", "--bench", "negbench-mcq-voc", "--skip-missing") == 0
    res = json.loads((tmp_path / "o/eval_results.json").read_text())
    assert res["negbench_mcq_voc_items"] == 2 and res["meta"]["skipped"] == {"negbench_mcq_voc": 1}
    assert "| 2 | 1 / 0 | 0 |" in (tmp_path / "o/summary.md").read_text()


def test_malformed_csv_row_is_one_line_naming_file_and_row(root_copy, tmp_path, capsys):
    root, model = root_copy
    csv_path = root / "negbench/COCO_val_mcq_llama3.1_rephrased.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join([*lines[:3], lines[3].rsplit(",", 1)[0] + ",neutral", *lines[4:]]) + "\n")
    assert _run(model, root, tmp_path / "o", "--bench", "negbench-mcq-coco") == 2
    line = _error_line(capsys)
    assert line == (f"negenc: error: {csv_path}:4: expected correct_answer_template in positive/negative/hybrid, "
                    "got 'neutral'")
    assert _run(model, root, tmp_path / "o", "--bench", "negbench-mcq-coco", "--skip-missing") == 0
    meta = json.loads((tmp_path / "o/eval_results.json").read_text())["meta"]
    assert meta["benchmarks"]["negbench_mcq_coco"]["skipped_malformed_rows"] == 1


def test_absent_benchmark_file_is_one_line_then_skipped_with_skip_missing(root_copy, tmp_path, capsys):
    root, model = root_copy
    (root / "negbench/COCO_val_retrieval.csv").unlink()
    assert _run(model, root, tmp_path / "o", "--bench", "valse,negbench-retrieval") == 2
    assert _error_line(capsys) == f"negenc: error: {root / 'negbench/COCO_val_retrieval.csv'}: benchmark file not found"
    assert _run(model, root, tmp_path / "o", "--bench", "valse,negbench-retrieval", "--skip-missing") == 0
    res = json.loads((tmp_path / "o/eval_results.json").read_text())
    assert "negbench_negated_r5" in res and "negbench_plain_r5" not in res
    assert list(res["meta"]["skipped_benchmarks"]) == ["negbench_plain"]
    assert "skipped `negbench_plain`" in (tmp_path / "o/summary.md").read_text()


def test_path_override_flag_is_used(root_copy, tmp_path):
    root, model = root_copy
    moved = tmp_path / "elsewhere.json"
    shutil.move(root / "valse/existence.json", moved)
    assert _run(model, root, tmp_path / "o", "--bench", "valse", "--valse-file", str(moved)) == 0
    res = json.loads((tmp_path / "o/eval_results.json").read_text())
    assert res["meta"]["benchmarks"]["valse_existence"]["file"] == str(moved) and res["valse_existence_items"] == 4


@pytest.mark.parametrize("extra,message", [
    (["--bench", "valse,mmlu"], "benches must be some of valse,negrefcocog,"),
    (["--bench", "valse", "--split-scoring"], "no split_scorer.json (a split reader fitted on training data); "
                                              "pass --split-weight W"),
    (["--bench", "valse", "--split-weight", "0.5"], "split_weight is only used with split_scoring"),
    (["--bench", "valse", "--batch-size", "0"], "batch_size must be a number >= 1, got 0"),
])
def test_bad_arguments_are_one_line(setup, tmp_path, capsys, extra, message):
    root, model = setup
    assert _run(model, root, tmp_path / "o", *extra) == 2
    assert message in _error_line(capsys)


def test_a_folder_that_is_not_a_clip_model_is_refused(setup, tmp_path, capsys):
    root, _ = setup
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert _run(bert, root, tmp_path / "o", "--bench", "valse") == 2
    assert _error_line(capsys) == f"negenc: error: --model {bert}: a folder of model_type 'bert'; expected a " \
                                  "CLIPModel checkpoint (model_type 'clip') (a negation-encoder checkpoint folder is one)"


def test_a_benchmark_left_empty_by_skipping_is_reported_as_skipped(root_copy, tmp_path, capsys):
    root, model = root_copy
    for f in (root / "voc2007/JPEGImages").iterdir():
        f.unlink()
    assert _run(model, root, tmp_path / "o", "--bench", "valse,negbench-mcq-voc", "--skip-missing") == 0
    res = json.loads((tmp_path / "o/eval_results.json").read_text())
    assert "negbench_mcq_voc" not in res and res["valse_existence_items"] == 4
    assert "no items to score (3 missing images" in res["meta"]["skipped_benchmarks"]["negbench_mcq_voc"]
    assert _run(model, root, tmp_path / "p", "--bench", "negbench-mcq-voc", "--skip-missing") == 2
    assert "nothing to evaluate: every selected benchmark was skipped" in _error_line(capsys)


def test_split_scoring_reads_the_split_scorer_saved_beside_the_checkpoint(setup, tmp_path):
    """`negenc eval --split-scoring` on a folder with split_scorer.json uses its weight and offset: the same
    numbers as passing them by hand, different from plain scoring."""
    import shutil

    from negation_encoder.split_scorer import SplitScorer

    root, model = setup
    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    SplitScorer(0.8, 0.15, fit={"items": 3}).save(folder)
    cache = tmp_path / "cache"
    assert _run(folder, root, tmp_path / "saved", "--bench", "valse", "--split-scoring", "--cache-dir", str(cache)) == 0
    assert _run(folder, root, tmp_path / "hand", "--bench", "valse", "--split-scoring", "--split-weight", "0.8",
                "--split-offset", "0.15", "--cache-dir", str(cache)) == 0
    saved = json.loads((tmp_path / "saved/eval_results.json").read_text())
    hand = json.loads((tmp_path / "hand/eval_results.json").read_text())
    assert saved["meta"]["split_scorer"]["weight"] == 0.8 and saved["meta"]["split_scorer"]["offset"] == 0.15
    assert saved["meta"]["split_scorer"]["fit"] == {"items": 3}
    pred = [json.loads(r) for r in (tmp_path / "saved/predictions/valse.split.jsonl").open()]
    assert pred == [json.loads(r) for r in (tmp_path / "hand/predictions/valse.split.jsonl").open()]
    assert saved["split"]["valse_existence"] == hand["split"]["valse_existence"]


def test_eval_folder_rules_refuse_resume_overwrite(setup, tmp_path, capsys):
    """A folder holding results is refused (nothing touched); --overwrite leaves nothing stale behind;
    --resume keeps the parts a killed run finished and equals an uninterrupted run."""
    root, model = setup
    out = tmp_path / "o"
    assert _run(model, root, out, "--bench", "valse,negbench-mcq-voc") == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "image_cache" not in p.parts}
    capsys.readouterr()
    assert _run(model, root, out, "--bench", "valse") == 2
    assert "already holds results" in _error_line(capsys)
    assert {p: p.read_bytes() for p in before} == before

    # a killed run: one part finished, the merged files never written
    full = json.loads((out / "eval_results.json").read_text())
    for name in ("eval_results.json", "summary.md"):
        (out / name).unlink()
    (out / "parts" / "negbench_mcq_voc.json").unlink()
    kept = (out / "parts" / "valse_existence.json").stat().st_mtime_ns
    assert _run(model, root, out, "--bench", "valse,negbench-mcq-voc", "--resume") == 0
    assert (out / "parts" / "valse_existence.json").stat().st_mtime_ns == kept, "a finished part was recomputed"
    again = json.loads((out / "eval_results.json").read_text())
    assert {k: v for k, v in again.items() if k != "meta"} == {k: v for k, v in full.items() if k != "meta"}
    assert _run(model, root, out, "--bench", "valse", "--resume") == 2  # other settings: refused
    assert "--resume" in _error_line(capsys)

    assert _run(model, root, out, "--bench", "valse", "--overwrite") == 0
    assert sorted(p.name for p in (out / "predictions").iterdir()) == ["valse.jsonl"], "stale predictions left"
    assert sorted(p.name for p in (out / "parts").iterdir()) == ["valse_existence.json"]
    res = json.loads((out / "eval_results.json").read_text())
    assert "negbench_mcq_voc" not in res and res["valse_existence"] == full["valse_existence"]


def test_an_image_the_model_cannot_take_is_one_line_before_compute(setup, tmp_path, capsys):
    import shutil

    from PIL import Image

    from negation_encoder.testing import tiny

    root, model = setup
    data, folder = tmp_path / "data", tmp_path / "model"
    shutil.copytree(root, data)
    shutil.copytree(model, folder)
    first = json.loads((data / "valse/existence.json").read_text())
    image = data / "valse/images" / next(iter(first.values()))["image_file"]
    Image.open(image).resize((40, 40)).save(image)
    assert _run(folder, data, tmp_path / "ok", "--bench", "valse") == 0  # this processor resizes
    tiny.build_clip_image_processor(32).__class__(do_resize=False, do_center_crop=False).save_pretrained(folder)
    assert _run(folder, data, tmp_path / "no", "--bench", "valse") == 2
    assert "is 40x40 but the model takes 32x32" in _error_line(capsys)
    assert not (tmp_path / "no" / "eval_results.json").exists()
