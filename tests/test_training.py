"""The training engine end to end on tiny data: loss goes down, resume is exact, cache, export."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from negation_encoder.errors import InputError, RunFailed
from negation_encoder.image_cache import ImageEmbeddingCache, cache_fingerprint
from negation_encoder.testing import tiny
from negation_encoder.training import TrainConfig, configure_trainable, train
from negation_encoder.training.batching import TokenTable

from ._tiny_world import make_tiny_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_tiny_world(tmp_path_factory.mktemp("world"))


TERMS = {"mcq": 1.0, "infonce": 1.0, "omni_presence": 0.5, "omni_absence": 0.5, "preserve": 0.5}


def _cfg(world, out, objective=None, **dotted):
    """A short run on the tiny world; `dotted` keys (written with `__` for the dot) override."""
    cfg = TrainConfig.from_dict({
        "model": {"base": world["base"]},
        "data": {"files": [world["data"]], "images": world["images"], "cache_dir": str(world["root"] / "cache")},
        "optim": {"steps": 6, "batch_size": 8, "lr": 1e-3, "warmup_steps": 2},
        "run": {"out": str(out), "save_every": 3, "log_every": 1},
        "objective": TERMS if objective is None else objective})
    return cfg.override({k.replace("__", "."): v for k, v in dotted.items()})


def _text_state(folder):
    from transformers import CLIPModel

    m = CLIPModel.from_pretrained(folder)
    return {k: v for k, v in m.state_dict().items() if k.startswith(("text_model.", "text_projection"))}


def test_short_run_lowers_loss_and_writes_layout(world, tmp_path):
    res = train(_cfg(world, tmp_path / "run", optim__steps=30, run__save_every=30), progress=False)
    losses = [e["loss"] for e in res.log]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    model = tmp_path / "run" / "model"
    for p in ("config.json", "model.safetensors", "text_encoder/model.safetensors",
              "text_encoder_with_projection/model.safetensors", "tokenizer/tokenizer.json",
              "training_config.json", "README.md"):
        assert (model / p).exists(), p
    # the three text towers hold the same weights
    from transformers import CLIPModel, CLIPTextModel, CLIPTextModelWithProjection

    clip = CLIPModel.from_pretrained(model)
    te = CLIPTextModel.from_pretrained(model / "text_encoder")
    tep = CLIPTextModelWithProjection.from_pretrained(model / "text_encoder_with_projection")
    for k, v in clip.text_model.state_dict().items():
        assert torch.equal(v, te.state_dict()[k]), k
        assert torch.equal(v, tep.text_model.state_dict()[k]), k
    assert torch.equal(clip.text_projection.weight, tep.text_projection.weight)
    # 4.x key names in text_encoder/
    from safetensors.torch import load_file

    keys = load_file(str(model / "text_encoder" / "model.safetensors")).keys()
    assert all(k.startswith("text_model.") for k in keys)
    # the vision tower did not move
    base = CLIPModel.from_pretrained(world["base"])
    for k, v in base.state_dict().items():
        if k.startswith(("vision_model.", "visual_projection")):
            assert torch.equal(v, clip.state_dict()[k]), k


def test_killed_and_resumed_run_matches_uninterrupted(world, tmp_path):
    straight = train(_cfg(world, tmp_path / "a"), progress=False)
    # "kill" after step 3: run 3 steps with the same schedule length, then resume to 6
    cfg = _cfg(world, tmp_path / "b")
    import shutil

    train(cfg, progress=False)
    ckpts = sorted((tmp_path / "b" / "checkpoints").iterdir())
    assert [c.name for c in ckpts] == ["step_3", "step_6"]
    shutil.rmtree(ckpts[-1])
    shutil.rmtree(tmp_path / "b" / "model")
    resumed = train(cfg, resume=True, progress=False)
    assert resumed.resumed_from == 3
    assert [e["step"] for e in resumed.log] == [4, 5, 6]
    a, b = _text_state(straight.out / "model"), _text_state(resumed.out / "model")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=f"{k} differs after resume")
    # the log is cut back to the checkpoint's step before the resumed steps are appended: no step twice,
    # and the eligibility counts stay its first line
    header, *log = [json.loads(x) for x in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    straight_header, *straight_log = [json.loads(x) for x in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    assert header == straight_header == {"eligible": straight.eligible, "records": straight.records}
    assert [e["step"] for e in log] == [1, 2, 3, 4, 5, 6]
    for x, y in zip(log, straight_log, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-5), (x, y)


def test_front_layers_only_and_frozen_params_get_no_grad(world, tmp_path):
    from transformers import CLIPModel

    m = CLIPModel.from_pretrained(world["base"])
    names = configure_trainable(m.text_model, m.text_projection, "front:1", train_embeddings=False,
                                train_final_layer_norm=False, train_projection=False)
    assert names and all(n.startswith("text_model.encoder.layers.0.") for n in names)
    res = train(_cfg(world, tmp_path / "front", model__layers="front:1", model__train_embeddings=False,
                     model__train_final_layer_norm=False, model__train_projection=False, optim__steps=3), progress=False)
    before, after = _text_state(world["base"]), _text_state(res.out / "model")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("text_model.encoder.layers.0.") for k in changed)


def test_stale_cache_is_rebuilt(world, tmp_path):
    from transformers import CLIPModel

    proc = tiny.build_clip_image_processor(32)
    loader = lambda k: Image.open(f"{world['images']}/{k}")  # noqa: E731
    cache = ImageEmbeddingCache(tmp_path / "c")
    m0 = CLIPModel.from_pretrained(world["base"])
    assert cache.build(m0, proc, ["0.png", "1.png"], loader, progress=False) == {"computed": 2, "cached": 0, "rebuilt_stale": 0}
    assert cache.build(m0, proc, ["0.png", "2.png"], loader, progress=False)["computed"] == 1
    e0 = cache.load(["0.png"])
    m1 = tiny.build_clip_model(seed=5)  # another vision tower: the cache is stale
    stats = cache.build(m1, proc, ["0.png"], loader, progress=False)
    assert stats == {"computed": 1, "cached": 0, "rebuilt_stale": 1}
    assert not torch.allclose(cache.load(["0.png"]), e0)
    other_proc = tiny.build_clip_image_processor(32)
    other_proc.image_mean = [0.1, 0.2, 0.3]
    assert cache.status(cache_fingerprint(m1, other_proc)) == "stale"


def test_dynamic_padding_is_exact_for_pooled_output(world):
    from transformers import CLIPModel, CLIPTokenizer

    m = CLIPModel.from_pretrained(world["base"]).eval()
    tok = CLIPTokenizer.from_pretrained(world["base"])
    texts = ["a dog", "a photo of a red car with no bus on the street"]
    table = TokenTable(tok, texts)
    ids, mask = table.pad(texts)
    assert ids.shape[1] == len(tok(texts[1]).input_ids) < 77
    full = tok(texts, padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        short = m.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
        long = m.get_text_features(input_ids=full.input_ids, attention_mask=full.attention_mask).pooler_output
    torch.testing.assert_close(short, long, rtol=1e-5, atol=1e-5)


def test_nan_loss_stops_with_clear_error(world, tmp_path):
    with pytest.raises(RunFailed, match="non-finite loss"):
        train(_cfg(world, tmp_path / "nan", optim__lr=1e30, optim__warmup_steps=0, optim__max_grad_norm=0.0), progress=False)


def test_bad_config_keys_and_files(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"optim": {"stpes": 3}}))
    with pytest.raises(InputError, match=r"unknown key\(s\) optim.stpes"):
        TrainConfig.from_file(bad)
    bad.write_text(json.dumps({"optim": {"lr": 0}}))
    with pytest.raises(InputError, match="optim: lr must be > 0"):
        TrainConfig.from_file(bad)
    cfg = TrainConfig().override(["optim.steps=7", "objective.infonce.hard_negatives=true", "model.layers=front:2"])
    assert cfg.optim.steps == 7 and cfg.objective["infonce"].hard_negatives is True and cfg.model.layers == "front:2"
    yaml_cfg = tmp_path / "c.yaml"
    yaml_cfg.write_text("optim:\n  steps: 5\n  lr: 1e-5\nobjective:\n  mcq: 0.5\n")
    loaded = TrainConfig.from_file(yaml_cfg)  # YAML 1.1 reads 1e-5 as a string; the reader takes it as a float
    assert loaded.optim.steps == 5 and loaded.optim.lr == 1e-5 and loaded.enabled_terms() == ["mcq"]
    yaml_cfg.write_text("optim:\n  lr: -1e-5\n")
    with pytest.raises(InputError, match="optim: lr must be >= 0, got -1e-05"):
        TrainConfig.from_file(yaml_cfg)


def test_split_reading_targets_match_the_split_scorer_by_hand(world):
    from transformers import CLIPModel, CLIPTokenizer

    from negation_encoder.encoding import encode_texts
    from negation_encoder.training.terms.split_distill import split_reading_targets

    m = CLIPModel.from_pretrained(world["base"]).eval()
    tok = CLIPTokenizer.from_pretrained(world["base"])
    targets, mask = split_reading_targets(m, tok, ["a photo of a dog with no cat", "a photo of a dog"], 0.5)
    assert mask.tolist() == [True, False] and torch.equal(targets[1], torch.zeros_like(targets[1]))
    aff, cat = encode_texts(m, tok, ["a photo of a dog", "a photo of a cat"])
    torch.testing.assert_close(targets[0], torch.nn.functional.normalize(aff - 0.5 * cat, dim=-1))
    res = train(_cfg(world, world["root"] / "distill", optim__steps=3, objective__split_distill=1.0, run__save_every=3), progress=False)
    assert all("split_distill" in e for e in res.log)


def test_embedding_preservation_keeps_affirmative_embeddings_at_the_base(world, tmp_path):
    from transformers import CLIPModel, CLIPTokenizer

    from negation_encoder.encoding import encode_texts

    tok = CLIPTokenizer.from_pretrained(world["base"])
    texts = [f"a photo of a {o}" for o in ("dog", "cat", "car", "bus", "tree", "cup")]
    base = encode_texts(CLIPModel.from_pretrained(world["base"]).eval(), tok, texts)

    def drift(**kw):
        res = train(_cfg(world, tmp_path / str(len(kw)), optim__steps=12, run__save_every=12, objective__preserve=0.0, **kw), progress=False)
        tuned = encode_texts(CLIPModel.from_pretrained(res.out / "model").eval(), tok, texts)
        return (1 - (tuned * base).sum(-1)).mean().item(), res

    free, _ = drift()
    kept, res = drift(objective__preserve_embeds=10.0)
    assert all("preserve_embeds" in e for e in res.log)
    assert kept < free, (kept, free)  # the term holds affirmative captions' embeddings nearer the base's


def test_rewritten_negations_train_infonce(world, tmp_path):
    """LLM rewrites rarely keep the caption verbatim ("a cup with no dog" from "a photo of a cup on a
    table"); they still affirm their image's content, so InfoNCE trains on them."""
    from negation_encoder.data import NegationRecord, write_records

    objects = ["dog", "cat", "car", "bus", "tree", "cup"]
    records = [NegationRecord(id=f"w{i}", image=f"{i}.png", caption=f"a photo of a {objects[i % 6]} on a table",
                              negated_caption=f"a {objects[i % 6]} with no {objects[(i + 2) % 6]}",
                              negation_type="absence", negated_concept=objects[(i + 2) % 6], source="test")
               for i in range(12)]
    data = tmp_path / "rewritten.jsonl"
    write_records(data, records)
    res = train(_cfg(world, tmp_path / "run", objective={"infonce": 1.0}, data__files=[str(data)], optim__steps=3,
                     run__save_every=3), progress=False)
    assert all(e["infonce"] > 0 for e in res.log), res.log
    assert res.eligible == {"infonce": 12}


def test_token_table_tokenizes_a_text_a_term_adds_as_the_tokenizer_does():
    """A term may put a text in the batch that no example holds (preserve_pooled adds the affirmative part): the
    table tokenizes it on first use, exactly as the tokenizer does, and pads it beside the others."""
    from negation_encoder.testing import tiny

    tok = tiny.build_clip_tokenizer()
    table = TokenTable(tok, ["a photo of a dog"])
    ids, mask = table.pad(["a photo of a dog", "a dog"])
    direct = tok(["a photo of a dog", "a dog"], padding=True, return_tensors="pt")
    assert torch.equal(ids, direct.input_ids) and torch.equal(mask, direct.attention_mask)
