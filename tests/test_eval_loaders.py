"""Each real-format loader on a fixture the test writes, scored by `negenc eval`'s benchmark modules and
checked against an independent route: the tiny model's own encode_texts / encode_images on images the
test opens (and crops) itself, with the rule written out by hand."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from negation_encoder.encoding import encode_images, encode_texts
from negation_encoder.errors import InputError
from negation_encoder.eval import bench
from negation_encoder.eval.datasets import (
    load_imagefolder,
    load_karpathy_coco,
    load_negbench_mcq,
    load_negrefcocog,
    load_retrieval_csv,
    load_valse_existence,
)
from negation_encoder.eval.encoder import Encoder, load_model
from negation_encoder.eval.paths import candidate_paths, resolve_image
from negation_encoder.split_scorer import SplitScorer, concept_prompt
from negation_encoder.splitting import RuleSplitter

from ._eval_fixtures import AUTHOR_VOC, CLASSES, write_data_root, write_image, write_model

ATOL = 1e-5


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval_loaders")
    root = write_data_root(base / "data")
    model_dir = write_model(base / "model")
    return root, load_model(str(model_dir)), base


def _encoder(world, split_weight: float | None = None) -> Encoder:
    _, loaded, base = world
    scorer = SplitScorer(split_weight) if split_weight is not None else None
    return Encoder(loaded, base / "cache", scorer, batch_size=3, device="cpu", progress=False)


def _img(loaded, images: list) -> torch.Tensor:
    pil = [Image.open(p).convert("RGB") if isinstance(p, (str, Path)) else p for p in images]
    return encode_images(loaded.model, loaded.image_processor, pil)


def _txt(loaded, texts: list[str]) -> torch.Tensor:
    """Each distinct text embedded once (identical strings get identical rows, whatever the thread count)."""
    unique = list(dict.fromkeys(texts))
    emb = encode_texts(loaded.model, loaded.tokenizer, unique)
    return emb[[unique.index(t) for t in texts]]


# ------------------------------------------------------------------------------------------------ paths


def test_resolve_image_prefers_the_longest_existing_suffix(tmp_path):
    folder = tmp_path / "voc2007" / "JPEGImages"
    short = write_image(folder / "000201.jpg", seed=1)
    longer = write_image(folder / "VOC2007" / "JPEGImages" / "000201.jpg", seed=2)
    recorded = f"{AUTHOR_VOC}/000201.jpg"
    assert resolve_image(recorded, folder) == longer, "the longest trailing suffix that exists must win"
    longer.unlink()
    assert resolve_image(recorded, folder) == short
    assert resolve_image("C:\\Users\\me\\data\\000201.jpg", folder) == short, "Windows-style paths resolve too"
    assert resolve_image(f"{AUTHOR_VOC}/999999.jpg", folder) is None
    cands = candidate_paths("data/coco/images/val2017/x.jpg", tmp_path)
    assert cands[0] == tmp_path / "data/coco/images/val2017/x.jpg" and cands[-1] == tmp_path / "x.jpg"


# ------------------------------------------------------------------------------------------------ VALSE


def test_valse_existence_matches_hand_computed_accuracy(world):
    root, loaded, _ = world
    data = load_valse_existence(root / "valse/existence.json", root / "valse/images")
    assert [it.id for it in data.items] == ["existence_visual7w_1", "existence_visual7w_2", "existence_visual7w_3",
                                           "existence_visual7w_5"], "mturk.caption < 2 must be dropped"
    assert data.filtered == 1 and data.skipped == 0
    out = bench.existence.evaluate(data, _encoder(world))
    img = _img(loaded, [it.image for it in data.items])
    t = _txt(loaded, [it.caption for it in data.items] + [it.foil for it in data.items])
    cap, foil = (img * t[:4]).sum(-1), (img * t[4:]).sum(-1)
    correct = [bool(c > f) for c, f in zip(cap.tolist(), foil.tolist(), strict=True)]
    assert correct[-1] is False, "caption == foil can never be correct under the strict rule"
    assert out.metrics["valse_existence"] == pytest.approx(sum(correct) / 4)
    assert out.metrics["valse_existence_items"] == 4
    assert [p["correct"] for p in out.predictions] == correct
    assert torch.allclose(torch.tensor([p["score_caption"] for p in out.predictions]), cap, atol=ATOL)


def test_valse_with_split_scoring_matches_the_rule_written_out(world):
    root, loaded, _ = world
    data = load_valse_existence(root / "valse/existence.json", root / "valse/images")
    w = 0.7
    out = bench.existence.evaluate(data, _encoder(world, split_weight=w))
    img = _img(loaded, [it.image for it in data.items])
    splitter = RuleSplitter()

    def score(i: int, text: str) -> float:
        s = splitter.split(text)
        if not s.negated:
            return float(img[i] @ _txt(loaded, [text])[0])
        concepts = _txt(loaded, [concept_prompt(c) for c in s.negated]) @ img[i]
        return float(img[i] @ _txt(loaded, [s.affirmative])[0]) - w * float(concepts.max())

    for i, (it, p) in enumerate(zip(data.items, out.predictions, strict=True)):
        assert p["score_caption"] == pytest.approx(score(i, it.caption), abs=ATOL), it.id
        assert p["score_foil"] == pytest.approx(score(i, it.foil), abs=ATOL), it.id
    assert splitter.split(data.items[0].caption).negated, "the fixture must contain a negated caption"


# ------------------------------------------------------------------------------------------ NegRefCOCOg


def test_negrefcocog_crops_boxes_and_matches_hand_computed_argmax(world):
    root, loaded, _ = world
    data = load_negrefcocog(root / "negrefcocog/NegRefCOCOg.json", root / "coco/train2014")
    assert [it.ref for it in data.items] == [0, 1, 1]
    out = bench.referring.evaluate(data, _encoder(world))
    correct = []
    for it, p in zip(data.items, out.predictions, strict=True):
        full = Image.open(it.image).convert("RGB")
        crops = [full.crop((x, y, x + w, y + h)) for x, y, w, h in it.boxes]
        sims = _img(loaded, crops) @ _txt(loaded, [it.phrase])[0]
        assert torch.allclose(torch.tensor(p["scores"]), sims, atol=ATOL), it.id
        pick = list(it.boxes[int(sims.argmax())])
        correct.append(pick == list(it.boxes[it.ref]))
        assert p["predicted_bbox"] == pick and p["correct"] == correct[-1]
    assert out.metrics == {"negrefcocog": pytest.approx(sum(correct) / 3), "negrefcocog_items": 3}


# ----------------------------------------------------------------------------------------- NegBench MCQ


@pytest.mark.parametrize("name,folder,key", [
    ("COCO_val_mcq_llama3.1_rephrased.csv", "coco/val2017", "negbench_mcq_coco"),
    ("VOC2007_mcq.csv", "voc2007/JPEGImages", "negbench_mcq_voc"),
])
def test_negbench_mcq_matches_hand_computed_accuracy_per_template(world, name, folder, key):
    root, loaded, _ = world
    data = load_negbench_mcq(root / "negbench" / name, root / folder)
    assert all(Path(it.image).parent == root / folder for it in data.items)
    out = bench.mcq.evaluate(data, _encoder(world), key)
    img = _img(loaded, [it.image for it in data.items])
    picks = [int((_txt(loaded, list(it.options)) @ img[i]).argmax()) for i, it in enumerate(data.items)]
    ok = [p == it.correct for p, it in zip(picks, data.items, strict=True)]
    assert out.metrics[key] == pytest.approx(sum(ok) / len(ok))
    assert out.metrics[f"{key}_items"] == len(data.items)
    for t in ("positive", "negative", "hybrid"):
        idx = [i for i, it in enumerate(data.items) if it.template == t]
        expected = sum(ok[i] for i in idx) / len(idx)
        assert out.metrics[f"{key}_{t}"] == pytest.approx(expected), t
    wrong = [("hybrid", "positive", "negative")[p - 1] for p, good in zip(picks, ok, strict=True) if not good]
    for t in ("positive", "negative", "hybrid"):
        share = wrong.count(t) / len(wrong) if wrong else 0.0
        assert out.metrics[f"{key}_wrong_picked_{t}"] == pytest.approx(share), t
    assert [p["predicted"] for p in out.predictions] == picks


def test_mcq_row_errors_name_file_and_line(tmp_path, world):
    root, _, _ = world
    bad = tmp_path / "mcq.csv"
    lines = (root / "negbench/VOC2007_mcq.csv").read_text().splitlines()
    lines[2] = lines[2].replace(",0,", ",7,", 1)
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=rf"^{bad}:3: expected correct_answer 0-3, got '7'$"):
        load_negbench_mcq(bad, root / "voc2007/JPEGImages")
    counted = load_negbench_mcq(bad, root / "voc2007/JPEGImages", skip_missing=True)
    assert (len(counted.items), counted.malformed_rows, counted.missing_images) == (2, 1, 0)


# -------------------------------------------------------------------------------------------- retrieval


def _ranks(text: torch.Tensor, image: torch.Tensor, targets: list[int]) -> list[int]:
    sims = text @ image.T
    return [int((row > row[t]).sum()) for row, t in zip(sims, targets, strict=True)]


@pytest.mark.parametrize("name,key", [
    ("COCO_val_negated_retrieval_llama3.1_rephrased_affneg_true.csv", "negbench_negated"),
    ("COCO_val_retrieval.csv", "negbench_plain"),
])
def test_negbench_retrieval_csv_matches_hand_computed_recall(world, name, key):
    root, loaded, _ = world
    data = load_retrieval_csv(root / "negbench" / name, root / "coco/val2017")
    rs = data.items[0]
    assert len(rs.gallery) == 4 and len(rs.queries) == 8 and rs.targets == [0, 0, 1, 1, 2, 2, 3, 3]
    out = bench.retrieval.evaluate(data, _encoder(world), key)
    ranks = _ranks(_txt(loaded, rs.queries), _img(loaded, rs.gallery), rs.targets)
    for k in (1, 5, 10):
        assert out.metrics[f"{key}_r{k}"] == pytest.approx(sum(r < k for r in ranks) / len(ranks)), k
    assert [p["rank"] for p in out.predictions] == ranks
    assert out.metrics[f"{key}_items"] == 8 and out.metrics[f"{key}_images"] == 4


def test_karpathy_test_split_matches_hand_computed_recall(world):
    root, loaded, _ = world
    data = load_karpathy_coco(root / "coco/dataset_coco.json", root / "coco")
    rs = data.items[0]
    assert [Path(g).name for g in rs.gallery] == [f"COCO_val2014_{i:012d}.jpg" for i in (301, 302, 303)]
    out = bench.retrieval.evaluate(data, _encoder(world), "coco")
    ranks = _ranks(_txt(loaded, rs.queries), _img(loaded, rs.gallery), rs.targets)
    assert out.metrics["coco_r1"] == pytest.approx(sum(r < 1 for r in ranks) / 6)
    assert out.metrics["coco_r5"] == 1.0 and out.metrics["coco_items"] == 6


def test_captions_cell_is_parsed_as_a_literal_never_evaluated(tmp_path, world):
    root, _, _ = world
    bad = tmp_path / "retrieval.csv"
    text = (root / "negbench/COCO_val_retrieval.csv").read_text()
    marker = tmp_path / "pwned"
    bad.write_text(text.replace("\"['A man is in a kitchen making pizzas.', 'A baker is working in the kitchen.']\"",
                                f"\"__import__('pathlib').Path('{marker}').touch()\""))
    with pytest.raises(InputError, match=rf"^{bad}:2: expected 'captions' as a list literal"):
        load_retrieval_csv(bad, root / "coco/val2017")
    assert not marker.exists()


# -------------------------------------------------------------------------------------------- zero-shot


def test_zeroshot_imagefolder_matches_hand_computed_top1(world):
    root, loaded, _ = world
    data = load_imagefolder(root / "imagenet/classnames.txt", root / "imagenet/val")
    zs = data.items[0]
    assert zs.classnames == [name for _, name in CLASSES] and zs.labels == [0, 0, 1, 1, 2, 2]
    out = bench.zeroshot.evaluate(data, _encoder(world))
    img = _img(loaded, zs.images)
    templates = bench.zeroshot.TEMPLATES
    cls = torch.stack([_txt(loaded, [t.format(c) for t in templates]).mean(0) for c in zs.classnames])
    cls = cls / cls.norm(dim=-1, keepdim=True)
    pred = (img @ cls.T).argmax(1).tolist()
    assert out.metrics["zeroshot_top1"] == pytest.approx(sum(p == y for p, y in zip(pred, zs.labels, strict=True)) / 6)
    assert out.metrics["zeroshot_items"] == 6 and out.metrics["zeroshot_classes"] == 3


def test_zeroshot_classname_count_must_match_folders(tmp_path, world):
    root, _, _ = world
    names = tmp_path / "classnames.txt"
    names.write_text("tench\ngoldfish\n")
    with pytest.raises(InputError, match=r"expected 3 non-empty class names .* got 2 lines"):
        load_imagefolder(names, root / "imagenet/val")
