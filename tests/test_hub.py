"""Model card metadata and round trip, publishing with HfApi mocked, and the usage snippets run."""

import re
from pathlib import Path
from unittest import mock

import pytest
import torch

from negation_encoder.checkpoint import build_model_card, publish, usage_snippets
from negation_encoder.checkpoint.export import export_checkpoint
from negation_encoder.cli import main
from negation_encoder.errors import InputError
from negation_encoder.results import make_results
from negation_encoder.testing import tiny

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    tok = tiny.build_clip_tokenizer()
    clip = tiny.build_clip_model(seed=2, tokenizer=tok, projection_dim=32)  # fits the tiny SDXL add-embedding
    out = tmp_path_factory.mktemp("pub") / "encoder"
    results = make_results({"world_mcq": 0.9, "world_existence": 0.95, "valse_existence": 0.8},
                           baseline={"world_mcq": 0.3, "world_existence": 0.7}, baseline_model="base")
    export_checkpoint(clip, tok, tiny.build_clip_image_processor(32), out,
                      training_config={"base": "openai/clip-vit-base-patch32", "steps": 10,
                                       "objectives": {"mcq": 1.0}, "data": ["/home/me/secret/p1.jsonl"]},
                      eval_results=results)
    return out


def test_card_metadata_and_round_trip(folder, tmp_path):
    from huggingface_hub import ModelCard

    card = build_model_card(folder, repo_id="org/neg-clip", datasets=["negation-encoder/testbed"])
    path = tmp_path / "README.md"
    card.save(path)
    again = ModelCard.load(path)
    data = again.data.to_dict()
    assert data["base_model"] == "openai/clip-vit-base-patch32"
    assert data["license"] == "mit" and data["library_name"] == "transformers"
    assert data["datasets"] == ["negation-encoder/testbed"]
    assert "negation" in data["tags"]
    results = {(r.task_name, r.dataset_name, r.metric_name, r.dataset_type): r.metric_value
               for r in again.data.eval_results}
    assert results == {
        ("Negated multiple choice (NegBench wording)", "negation-encoder testbed world: MCQ twin", "accuracy",
         "negation-encoder/testbed"): 0.9,
        ("Existence caption vs foil (VALSE-style)", "negation-encoder testbed world: existence twin",
         "pairwise accuracy (acc_r)", "negation-encoder/testbed"): 0.95,
        ("Existence caption vs foil", "VALSE existence", "pairwise accuracy (acc_r)", "Heidelberg-NLP/VALSE"): 0.8}
    assert "| negation-encoder testbed world: MCQ twin: Negated multiple choice (NegBench wording) (accuracy) | " \
        "0.900 | 0.300 |" in again.text
    assert 'CLIPModel.from_pretrained("org/neg-clip")' in again.text
    assert "/home/me" not in again.text and "p1.jsonl" in again.text, "a local path leaked into the card"
    assert '{"mcq": 1.0}' in again.text


# Every registered key, by hand: (task name, dataset name, metric name). Two keys share an entry only where
# they are one benchmark's numbers (NegBench's templates, one retrieval set's Recall@k).
MCQ = "Negated multiple-choice caption selection"
WORLD = "negation-encoder testbed world: "
EXPECTED_CARD = {
    "valse_existence": ("Existence caption vs foil", "VALSE existence", "pairwise accuracy (acc_r)"),
    "negrefcocog": ("Negated referring expression box selection", "NegRefCOCOg", "accuracy"),
    **{f"negbench_mcq_{src}{sfx}": (MCQ, name, metric)
       for src, name in (("coco", "NegBench MCQ COCO (val2017)"), ("voc", "NegBench MCQ VOC2007"))
       for sfx, metric in (("", "accuracy"), ("_positive", "accuracy (positive template)"),
                           ("_negative", "accuracy (negative template)"), ("_hybrid", "accuracy (hybrid template)"))},
    **{f"{prefix}_r{k}": (task, name, f"Recall@{k}") for k in (1, 5, 10)
       for prefix, task, name in (
           ("negbench_negated", "Negated text-to-image retrieval", "NegBench negated retrieval COCO (val2017)"),
           ("negbench_plain", "Text-to-image retrieval", "NegBench retrieval COCO (val2017)"),
           ("coco", "Text-to-image retrieval", "COCO Karpathy test"))},
    "zeroshot_top1": ("Zero-shot classification", "ImageNet-style zero-shot", "top-1 accuracy"),
    "world_existence": ("Existence caption vs foil (VALSE-style)", WORLD + "existence twin",
                        "pairwise accuracy (acc_r)"),
    **{f"world_mcq{sfx}": ("Negated multiple choice (NegBench wording)", WORLD + "MCQ twin", metric)
       for sfx, metric in (("", "accuracy"), ("_positive", "accuracy (positive template)"),
                           ("_negative", "accuracy (negative template)"), ("_hybrid", "accuracy (hybrid template)"))},
    "world_pairwise": ("Negated referring expression, two objects", WORLD + "referring-expression twin",
                       "referred-object accuracy"),
    "world_retrieval_negated_r5": ("Negated text-to-image retrieval", WORLD + "negated retrieval twin",
                                   "Recall@5 (any valid image)"),
    "world_retrieval_negated_group_top1": ("Negated retrieval among counterfactuals",
                                           WORLD + "negated retrieval twin, counterfactual groups",
                                           "group top-1 accuracy"),
    "world_retrieval_plain_r5": ("Text-to-image retrieval", WORLD + "plain retrieval twin", "Recall@5"),
    "world_heldout_existence": ("Existence with held-out cue words", WORLD + "held-out-cue existence twin",
                                "pairwise accuracy (acc_r), held-out cues"),
    "world_heldout_mcq": ("Multiple choice with held-out cue words", WORLD + "held-out-cue MCQ twin",
                          "accuracy, held-out cues"),
    "world_zeroshot": ("Zero-shot classification", WORLD + "zero-shot twin", "top-1 accuracy"),
}


def test_card_gives_every_benchmark_its_own_model_index_entry(tmp_path):
    """A card from every registered key, read back by huggingface_hub's own parser: each number comes back
    once, under its own task and dataset and a metric name no other number in that entry has."""
    import json

    from huggingface_hub import ModelCard
    from huggingface_hub.repocard import metadata_load

    from negation_encoder.results import REGISTRY

    assert set(EXPECTED_CARD) == set(REGISTRY), "a registered key this test does not name (or the reverse)"
    keys = sorted(EXPECTED_CARD)
    values = {k: round(0.1 + i / 100, 4) for i, k in enumerate(keys)}  # distinct, so a value names its key
    folder = tmp_path / "enc"
    folder.mkdir()
    (folder / "eval_results.json").write_text(json.dumps(make_results(values)))
    text = str(build_model_card(folder, repo_id="org/neg-clip"))
    path = tmp_path / "README.md"
    path.write_text(text)

    by_value = {}
    for r in ModelCard(text).data.eval_results:
        assert r.metric_value not in by_value, f"{r.metric_value} read back twice"
        by_value[r.metric_value] = (r.task_name, r.dataset_name, r.metric_name)
    assert by_value == {values[k]: EXPECTED_CARD[k] for k in keys}

    entries = metadata_load(path)["model-index"][0]["results"]
    # 8 papers' benchmarks (VALSE, NegRefCOCOg, MCQ COCO, MCQ VOC, negated / plain NegBench retrieval, COCO,
    # zero-shot) and 9 twins (existence, MCQ, pairwise, negated retrieval, its groups, plain retrieval, two
    # held-out, zero-shot)
    assert len(entries) == 17
    for e in entries:
        names = [m["name"] for m in e["metrics"]]
        assert len(names) == len(set(names)), e
        for m in e["metrics"]:
            key = next(k for k in keys if values[k] == m["value"])
            assert (e["task"]["name"], e["dataset"]["name"], m["name"]) == EXPECTED_CARD[key]


def test_registry_check_refuses_keys_that_would_share_an_entry():
    from negation_encoder.results import CardInfo, check_card_entries

    a = CardInfo("world", "org/set", "text-to-image-retrieval", "Negated retrieval", "Recall@5")
    check_card_entries({"a": a, "b": CardInfo("world", "org/set", "text-to-image-retrieval", "Negated retrieval",
                                              "Recall@10")})
    with pytest.raises(ValueError, match="different tasks or datasets"):
        check_card_entries({"a": a, "b": CardInfo("world", "org/set", "text-to-image-retrieval", "Group top-1",
                                                  "group top-1")})
    with pytest.raises(ValueError, match="metric name"):
        check_card_entries({"a": a, "b": CardInfo("world", "org/set", "text-to-image-retrieval",
                                                  "Negated retrieval", "Recall@5")})
    check_card_entries({"a": a, "b": CardInfo("world", "org/set", "text-to-image-retrieval", "Group top-1",
                                              "group top-1", dataset_config="groups")})


def test_publish_uploads_one_commit_with_mocked_api(folder):
    api = mock.MagicMock()
    api.create_repo.return_value = "https://huggingface.co/org/neg-clip"
    seen = {}

    def upload_folder(**kw):
        staged = Path(kw["folder_path"])
        seen["files"] = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file())
        seen["card"] = (staged / "README.md").read_text()
        seen.update(kw)

    api.upload_folder.side_effect = upload_folder
    res = publish(folder, "org/neg-clip", api=api)
    api.create_repo.assert_called_once_with("org/neg-clip", exist_ok=True, private=None)
    assert seen["repo_id"] == "org/neg-clip"
    for f in ("model.safetensors", "text_encoder/model.safetensors", "text_encoder_with_projection/model.safetensors",
              "tokenizer/tokenizer.json", "README.md", "eval_results.json"):
        assert f in seen["files"]
    assert '"org/neg-clip"' in seen["card"]
    assert res.files == seen["files"] and not res.dry_run


def test_publish_refuses_pickle_and_bad_repo_id(folder, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    (bad / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(InputError, match="refusing to upload pickle weights.*pytorch_model.bin"):
        publish(bad, "org/x", dry_run=True)
    assert publish(bad, "org/x", dry_run=True, allow_pickle=True).dry_run
    with pytest.raises(InputError, match="ORG/NAME"):
        publish(folder, "no-slash", dry_run=True)


def test_publish_cli_dry_run_changes_nothing(folder, capsys):
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert main(["publish", str(folder), "--repo-id", "org/neg-clip", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would upload" in out and "README.md" in out and "text_encoder/model.safetensors" in out
    assert 'CLIPModel.from_pretrained("org/neg-clip")' in out  # the card it would send
    after = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert after == before, "a dry run changed the folder"


def test_hand_written_readme_is_never_replaced(folder, tmp_path, capsys):
    import shutil

    own = tmp_path / "own"
    shutil.copytree(folder, own)
    (own / "README.md").write_text("# My encoder\n\nHand-written notes.\n")
    assert main(["publish", str(own), "--repo-id", "org/x", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "hand-written, kept as is" in out and "Hand-written notes." in out
    assert (own / "README.md").read_text() == "# My encoder\n\nHand-written notes.\n"
    from negation_encoder.checkpoint import write_model_card

    write_model_card(own)  # what a re-export does: the hand-written card stays
    assert (own / "README.md").read_text() == "# My encoder\n\nHand-written notes.\n"


def test_card_names_what_the_model_was_trained_from(tmp_path):
    tok = tiny.build_clip_tokenizer()
    out = tmp_path / "enc"
    export_checkpoint(tiny.build_clip_model(seed=0, tokenizer=tok), tok, tiny.build_clip_image_processor(32), out,
                      training_config={"model": {"base": "base"}, "base_model": "negation-encoder testbed world CLIP "
                                       "(`negenc testbed pretrain`)", "run": {"recipe": "default"},
                                       "objectives": {"mcq": {"weight": 1.0}}})
    text = (out / "README.md").read_text()
    assert "Base model: negation-encoder testbed world CLIP" in text and "Recipe: `default`" in text
    assert "Base model: `base`" not in text
    from huggingface_hub import ModelCard

    assert ModelCard.load(out / "README.md").data.to_dict().get("base_model") is None  # not a Hub id


def test_text_encoder_keys_are_transformers_4x_names(folder):
    from safetensors.torch import load_file

    te = load_file(str(folder / "text_encoder" / "model.safetensors"))
    tep = load_file(str(folder / "text_encoder_with_projection" / "model.safetensors"))
    full = load_file(str(folder / "model.safetensors"))
    # transformers 4.x: CLIPTextModel and CLIPTextModelWithProjection keys start with text_model.
    assert "text_model.embeddings.token_embedding.weight" in te
    assert "text_model.final_layer_norm.weight" in te
    assert "text_model.embeddings.token_embedding.weight" in tep and "text_projection.weight" in tep
    assert "text_model.encoder.layers.0.self_attn.q_proj.weight" in full and "visual_projection.weight" in full


def _blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("hidden,proj,fits,not_fits", [
    (768, 768, ["Stable Diffusion 1.x", "SDXL `text_encoder`", "Flux"], ["SDXL `text_encoder_2`", "CLIPSeg",
                                                                          "Stable Diffusion 2.x"]),
    (512, 512, ["CLIPSeg"], ["Stable Diffusion 1.x"]),
    (64, 64, [], ["Stable Diffusion 1.x", "CLIPSeg", "SDXL `text_encoder_2`"]),
])
def test_card_states_compatibility_from_the_encoder_widths(tmp_path, hidden, proj, fits, not_fits):
    """What the card promises follows the widths: a 64-wide world encoder fits no public pipeline, a
    CLIP-L-sized one fits SD 1.x but never SDXL's wider second encoder, and only fitting targets get usage."""
    from negation_encoder.checkpoint import compatibility

    ok, no = compatibility(hidden, proj)
    names, missing = [t.name for t in ok], [t.name for t, _ in no]
    for f in fits:
        assert any(n.startswith(f) for n in names), (f, names)
    for f in not_fits:
        assert any(n.startswith(f) for n in missing) and not any(n.startswith(f) for n in names), (f, names)
    tok = tiny.build_clip_tokenizer()
    clip = tiny.build_clip_model(seed=0, tokenizer=tok, text_hidden_size=hidden, projection_dim=proj)
    out = export_checkpoint(clip, tok, tiny.build_clip_image_processor(32), tmp_path / "enc", training_config={})
    text = (out / "README.md").read_text()
    assert f"text width {hidden}, projection {proj}" in text
    assert ("StableDiffusionPipeline" in text) == ("Stable Diffusion 1.x" in fits)
    assert ("CLIPSegForImageSegmentation" in text) == ("CLIPSeg" in fits)
    assert "StableDiffusionXLPipeline" not in text, "no SDXL snippet without a matching second encoder"
    if not fits:
        assert "It fits none of the public pipelines" in text


def test_card_snippets_run_against_tiny_local_models(folder, tmp_path):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    sd = StableDiffusionPipeline(**tiny.build_sd_components(seed=0), requires_safety_checker=False)
    sd.save_pretrained(tmp_path / "sd")
    xl = StableDiffusionXLPipeline(**tiny.build_sdxl_components(seed=0))
    xl.save_pretrained(tmp_path / "sdxl")
    tiny.build_flux_pipeline(seed=0).save_pretrained(tmp_path / "flux")
    tiny.build_clipseg(seed=0, projection_dim=32).save_pretrained(tmp_path / "clipseg")
    snippets = usage_snippets(str(folder), repo_2=str(folder), sd_base=str(tmp_path / "sd"),
                              sd2_base=str(tmp_path / "sd"), sdxl_base=str(tmp_path / "sdxl"),
                              flux_base=str(tmp_path / "flux"), clipseg_base=str(tmp_path / "clipseg"))
    assert set(snippets) == {"clip", "sd", "sd2", "sdxl", "flux", "clipseg"}
    for name, snippet in snippets.items():
        code = _blocks(snippet)[0]
        compiled = compile(code, f"<{name} snippet>", "exec")
        if name in ("sd", "sd2", "sdxl", "flux"):
            assert 'negation_kwargs(pipe, "a street with no cars", keep_prompt=True)' in code, name
            # keep CI fast: 2 steps instead of the default 50 (and the tiny Flux's sizes)
            extra = "height=32, width=32, max_sequence_length=16, " if name == "flux" else ""
            compiled = compile(code.replace("generator=", f"num_inference_steps=2, {extra}generator="),
                               f"<{name} snippet>", "exec")
        scope: dict = {}
        exec(compiled, scope)  # noqa: S102 - our own card text
        if name == "clipseg":
            assert torch.equal(scope["seg"].clip.text_projection.weight,
                               scope["CLIPModel"].from_pretrained(str(folder)).text_projection.weight)
        elif name == "clip":
            assert scope["processor"](text=["a dog with no hat"], return_tensors="pt").input_ids.shape[0] == 1
        else:
            assert scope["image"].size == (32, 32)
            assert scope["kwargs"]["prompt"] == "a street with no cars" and scope["kwargs"]["negative_prompt"] == "cars"
            if name == "flux":  # the stacked route turns true CFG on and gives the T5 the affirmative part
                assert scope["kwargs"]["true_cfg_scale"] > 1 and scope["kwargs"]["prompt_2"] == "a street"


def _card_for(tmp_path, hidden: int, proj: int, training_config: dict, **card):
    from huggingface_hub import ModelCard

    tok = tiny.build_clip_tokenizer()
    clip = tiny.build_clip_model(seed=0, tokenizer=tok, text_hidden_size=hidden, projection_dim=proj)
    out = export_checkpoint(clip, tok, tiny.build_clip_image_processor(32), tmp_path / f"enc{hidden}",
                            training_config=training_config)
    path = tmp_path / f"README{hidden}.md"
    build_model_card(out, repo_id="org/neg", **card).save(path)
    return ModelCard.load(path)


@pytest.mark.parametrize("hidden,proj,families,absent", [
    (768, 768, ["Stable Diffusion 1.x:", "Flux (the CLIP encoder replaced; its T5 stays"],
     ["Stable Diffusion 2.x:", "CLIPSeg:", "SDXL ("]),
    (1024, 1024, ["Stable Diffusion 2.x:"], ["Stable Diffusion 1.x:", "Flux (", "CLIPSeg:"]),
    (512, 512, ["CLIPSeg:"], ["Stable Diffusion 1.x:", "Flux (", "negation_kwargs(pipe"]),
])
def test_card_renders_a_snippet_per_fitting_family_with_the_stacked_use(tmp_path, hidden, proj, families, absent):
    """Rendered, saved and parsed back: one block per family the widths fit, each compiling, the stacked use
    recommended wherever a diffusers pipeline fits, and the docs named by their path (no invented URL)."""
    card = _card_for(tmp_path, hidden, proj, {"base_model": "openai/clip-vit-large-patch14"})
    text = card.text
    for title in families:
        assert title in text, title
    for title in absent:
        assert title not in text, title
    blocks = _blocks(text)
    assert len(blocks) == 1 + len(families)  # the CLIPModel block, then one per fitting family
    for i, code in enumerate(blocks):
        compile(code, f"<card block {i}>", "exec")
    diffusers_fit = any(not t.startswith("CLIPSeg") for t in families)
    assert ("negation_kwargs(pipe, prompt, keep_prompt=True)" in text) == diffusers_fit
    assert "## Documentation" in text and "`docs/integrations.md`" in text and "http" not in text.split(
        "## Documentation")[1]


@pytest.mark.parametrize("base,license,note", [
    ("openai/clip-vit-large-patch14", "mit", "`mit`, the license of the base model `openai/clip-vit-large-patch14`."),
    ("negation-encoder testbed world CLIP (`negenc testbed pretrain`)", "mit", "the negation-encoder testbed's world"),
    ("/home/me/models/my-clip", "other", "`other`: the license of the base model (my-clip) is not known to the library "
                                         "that wrote this card."),
])
def test_card_license_follows_the_base_model(tmp_path, base, license, note):
    card = _card_for(tmp_path, 64, 64, {"base_model": base})
    assert card.data.to_dict()["license"] == license
    assert note in card.text.split("## License")[1]
    assert "/home/me" not in card.text


def test_a_local_base_with_its_own_card_gives_its_license(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "README.md").write_text("---\nlicense: apache-2.0\n---\n# a base\n")
    card = _card_for(tmp_path, 64, 64, {"base_model": str(base)})
    assert card.data.to_dict()["license"] == "apache-2.0"


def test_publish_license_flag_sets_the_card_license(folder, capsys):
    assert main(["publish", str(folder), "--repo-id", "org/x", "--dry-run", "--license", "apache-2.0"]) == 0
    out = capsys.readouterr().out
    assert "license: apache-2.0" in out and "`apache-2.0` (set when the card was written)." in out
    assert main(["publish", str(folder), "--repo-id", "org/x", "--dry-run"]) == 0
    assert "license: mit" in capsys.readouterr().out  # the base is openai/clip-vit-base-patch32
    assert main(["publish", str(folder), "--repo-id", "org/x", "--dry-run", "--license", "Apache 2"]) == 2
    assert capsys.readouterr().err.strip() == ("negenc: error: --license: expected a Hub license id such as mit, "
                                               "apache-2.0, cc-by-4.0 or other (lowercase, no spaces), got 'Apache 2'")


def test_card_says_which_pipeline_reading_the_encoder_was_trained_for(tmp_path):
    tok = tiny.build_clip_tokenizer()
    out = tmp_path / "enc"
    export_checkpoint(tiny.build_clip_model(seed=0, tokenizer=tok), tok, tiny.build_clip_image_processor(32), out,
                      training_config={"base_model": "b", "pipeline": {"family": "sdxl", "slot": "text_encoder",
                                                                       "clip_skip": 1, "length": 77}})
    text = (out / "README.md").read_text()
    assert "Trained for: SDXL, slot `text_encoder`, clip_skip 1 (token states of hidden layer -3, 77 positions, " \
           "without the attention mask)." in text, text
