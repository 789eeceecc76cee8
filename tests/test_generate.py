"""Real-data pipelines: COCO / VQAv2 loaders, an OpenAI-compatible server on 127.0.0.1, tiny random
transformers models, resume after a kill, shards and merge."""

import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from negation_encoder.cli import main
from negation_encoder.data import read_records
from negation_encoder.data.coco import classify_question, load_coco_captions, load_vqa_no_items
from negation_encoder.data.llm import (
    OpenAIChat,
    PromptedLLM,
    TransformersChat,
    load_prompt,
    parse_object_list,
)
from negation_encoder.data.pipelines import PipelineConfig, run_pipeline
from negation_encoder.errors import InputError, RunFailed
from negation_encoder.testing.tiny import build_chat_lm

CAPTIONS = ["A dog sitting on a red couch.", "A man riding a bike down the street.", "A plate of food on a table.",
            "Two cats sleeping on a bed.", "A bus parked next to a building.", "A woman holding an umbrella."]


@pytest.fixture()
def coco(tmp_path):
    images = tmp_path / "train2014"
    images.mkdir()
    rng = np.random.default_rng(0)
    imgs, anns = [], []
    for i, cap in enumerate(CAPTIONS):
        name = f"COCO_train2014_{i:012d}.jpg"
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(images / name)
        imgs.append({"id": i, "file_name": name, "height": 24, "width": 24})
        anns.append({"id": 100 + i, "image_id": i, "caption": cap})
    cap_file = tmp_path / "captions_train2014.json"
    cap_file.write_text(json.dumps({"info": {}, "licenses": [], "images": imgs, "annotations": anns}))
    qs = [{"question_id": 1000 + i, "image_id": i, "question": q} for i, q in
          enumerate(["Is the couch blue?", "Is the man running?", "Is there a fork?", "Are the cats awake?",
                     "Is the bus moving?", "Is it raining?"])]
    ans = []
    for i, q in enumerate(qs):
        mc = "yes" if i == 5 else "no"
        ans.append({"question_id": q["question_id"], "image_id": i, "question_type": "is the", "answer_type": "yes/no",
                    "multiple_choice_answer": mc,
                    "answers": [{"answer": mc, "answer_confidence": "yes", "answer_id": j + 1} for j in range(10)]})
    ans.append({"question_id": 2000, "image_id": 0, "answer_type": "number", "multiple_choice_answer": "2",
                "question_type": "how many", "answers": []})
    qs.append({"question_id": 2000, "image_id": 0, "question": "How many dogs?"})
    qf, af = tmp_path / "v2_OpenEnded_mscoco_train2014_questions.json", tmp_path / "v2_mscoco_train2014_annotations.json"
    qf.write_text(json.dumps({"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "questions": qs}))
    af.write_text(json.dumps({"info": {}, "data_type": "mscoco", "annotations": ans}))
    return {"captions": cap_file, "images": images, "questions": qf, "annotations": af, "root": tmp_path}


def test_loaders_read_real_formats(coco):
    items = load_coco_captions(coco["captions"], coco["images"])
    assert [it.id for it in items] == [f"coco-{100 + i}" for i in range(6)]
    assert items[0].image == "COCO_train2014_000000000000.jpg" and items[0].caption == CAPTIONS[0]
    qa = load_vqa_no_items(coco["questions"], coco["annotations"], coco["captions"], coco["images"])
    assert len(qa) == 5  # the "yes" and the number question are not "no" yes/no questions
    assert qa[0].caption == CAPTIONS[0] and qa[0].negation_type == "attribute"
    assert classify_question("Is the man running?") == "action" and classify_question("Is there a fork?") == "absence"


def test_malformed_inputs_give_one_line_naming_file_and_entry(coco, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "x.jpg"}], "annotations": [{"id": 5, "image_id": 1}]}))
    with pytest.raises(InputError, match=r"bad.json: annotations\[0\] is missing 'caption'"):
        load_coco_captions(bad)
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json: invalid JSON at line 1"):
        load_coco_captions(bad)
    (coco["images"] / "COCO_train2014_000000000003.jpg").unlink()
    with pytest.raises(InputError, match=r"image 'COCO_train2014_000000000003.jpg' \(image_id 3\) not found"):
        load_coco_captions(coco["captions"], coco["images"])
    code = main(["generate", "p2", "--coco-captions", str(coco["captions"]), "--images", str(coco["images"]),
                 "--vqa-questions", str(bad), "--vqa-annotations", str(coco["annotations"]),
                 "--llm", "openai:m@http://127.0.0.1:9", "--out", str(tmp_path / "o.jsonl")])
    assert code == 2


# ---------------------------------------------------------------------------------------------
# an OpenAI-compatible server that answers meaningfully (a real HTTP round trip)


class _Handler(BaseHTTPRequestHandler):
    calls = 0
    fail_first = 0

    def log_message(self, *args):  # keep test output clean
        """Silence per-request logging."""

    def do_POST(self):  # noqa: N802 - http.server API
        type(self).calls += 1
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        content = body["messages"][-1]["content"]
        if isinstance(content, list):  # the MLLM: image + "Is there a X in this image?"
            text = next(c["text"] for c in content if c["type"] == "text")
            concept = re.search(r"Is there a (.+?) in this image", text).group(1)
            p_yes = 0.9 if concept in {"dog", "couch", "man", "bike", "plate", "table", "cat", "bed", "bus"} else 0.05
            answer = {"message": {"role": "assistant", "content": "yes" if p_yes > 0.5 else "no"},
                      "logprobs": {"content": [{"token": "yes", "logprob": math.log(0.9), "top_logprobs": [
                          {"token": "yes", "logprob": math.log(p_yes)}, {"token": "no", "logprob": math.log(1 - p_yes)}]}]}}
        else:
            caption = re.search(r'Caption: "(.*)"', content).group(1).rstrip(".")
            concept = re.search(r"there is (?:no|a) (.+?) in the photo", content)
            if content.startswith("You are given"):
                text = '["fork", "dog", "lamp"]'
            elif "opposite" in content:
                text = f"{caption}, and it is so"
            elif "answered" in content:
                q = re.search(r'Question: "(.*)"', content).group(1)
                word = q.rstrip("?").split()[-1]
                text = f"{caption}, and it is not {word}"
            elif "Do not use any negation" in content:
                text = f"{caption} with a {concept.group(1)}"
            else:
                text = f"{caption} with no {concept.group(1)}"
            answer = {"message": {"role": "assistant", "content": text}}
        out = json.dumps({"id": "x", "object": "chat.completion", "choices": [{"index": 0, **answer}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def _gen(coco, pipeline, out, url, *extra):
    args = ["generate", pipeline, "--coco-captions", str(coco["captions"]), "--images", str(coco["images"]),
            "--llm", f"openai:tiny-llm@{url}", "--out", str(out), "--no-progress", *extra]
    if pipeline in ("p1", "rand-p1"):
        args += ["--mllm", f"openai:tiny-mllm@{url}/v1"]
    if pipeline == "p2":
        args += ["--vqa-questions", str(coco["questions"]), "--vqa-annotations", str(coco["annotations"])]
    return main(args)


@pytest.mark.parametrize("pipeline", ["p1", "rand-p1", "p2", "presence"])
def test_every_pipeline_over_http(coco, server, tmp_path, pipeline, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    out = tmp_path / f"{pipeline}.jsonl"
    assert _gen(coco, pipeline, out, server) == 0
    recs = read_records(out)
    assert recs, "no records written"
    for r in recs:
        assert r.provenance["llm"] == "openai:tiny-llm" and r.provenance["llm_prompt_version"] == "v1"
        assert r.negated_concept.lower() in r.negated_caption.lower()
    if pipeline == "p1":
        # the server says dog is present in image 0: "dog" must never be negated there
        assert not any(r.image.endswith("0.jpg") and r.negated_concept == "dog" for r in recs)
        assert all(r.provenance["mllm"] == "openai:tiny-mllm" for r in recs)
        stats = json.loads((tmp_path / "p1.jsonl.stats.json").read_text())
        assert stats["rejects"].get("verify:present_or_unsure", 0) > 0
    if pipeline == "p2":
        assert {r.negation_type for r in recs} <= {"attribute", "action", "absence"}
    if pipeline == "presence":  # objects the caption mentions (COCO category names), negated: false captions
        assert {r.negated_concept for r in recs} <= {"dog", "couch", "bus", "umbrella", "bed", "cat", "dining table"}
        assert all(r.negation_type == "presence" for r in recs) and len(recs) >= 4
    assert "sk-test-secret" not in out.read_text()


def test_retries_with_backoff_then_succeeds(server):
    _Handler.fail_first, _Handler.calls = 2, 0
    chat = OpenAIChat(server, "tiny-llm", max_retries=3, concurrency=1)
    out = chat.chat([[{"role": "user", "content": 'You are given... Caption: "a dog"'}]])
    assert out == ['["fork", "dog", "lamp"]'] and _Handler.calls == 3  # two 503s retried, then the answer
    _Handler.fail_first, _Handler.calls = 5, 0
    with pytest.raises(RunFailed, match="HTTP 503 from the server after up to 1 retries"):
        OpenAIChat(server, "tiny-llm", max_retries=1, concurrency=1).chat([[{"role": "user", "content": "x"}]])
    assert _Handler.calls == 2
    _Handler.fail_first = 0


def test_resume_after_kill_and_shards_merge(coco, server, tmp_path):
    full = tmp_path / "full.jsonl"
    assert _gen(coco, "p1", full, server) == 0
    # a run killed after 2 items: rerunning the same command finishes the rest, no duplicates, no gaps
    part = tmp_path / "part.jsonl"
    assert _gen(coco, "p1", part, server, "--limit", "2", "--batch-size", "1") == 0
    lines = part.read_text().splitlines(keepends=True)
    part.write_text("".join(lines) + lines[-1][:20])  # plus a torn line, as a kill mid-write leaves
    assert _gen(coco, "p1", part, server, "--batch-size", "1") == 0
    ids = [r.id for r in read_records(part)]
    assert sorted(ids) == sorted(r.id for r in read_records(full)) and len(ids) == len(set(ids))
    shards = [tmp_path / f"s{i}.jsonl" for i in range(2)]
    for i, s in enumerate(shards):
        assert _gen(coco, "p1", s, server, "--shard", f"{i}/2") == 0
    a, b = ({r.id for r in read_records(s)} for s in shards)
    assert not (a & b)
    merged = tmp_path / "merged.jsonl"
    assert main(["data", "merge", str(merged), str(shards[0]), str(shards[1]), str(shards[0])]) == 0
    assert sorted(r.id for r in read_records(merged)) == sorted(r.id for r in read_records(full))


# ---------------------------------------------------------------------------------------------
# tiny random transformers models: gibberish is rejected and counted, never written


def test_tiny_random_llm_output_is_rejected_and_counted(coco, tmp_path):
    # a vocabulary without negation cues: whatever the random model says can never pass validation
    model, tok = build_chat_lm(seed=0, words=["a", "dog", "with", "fork", "photo", "the", "in", "[", "]", '"', ","])
    llm = PromptedLLM(TransformersChat(model, tok, batch_size=4))
    assert tok.padding_side == "left"

    class AlwaysAbsent:
        name, prompt_version = "stub-mllm", "v1"

        def presence_probability(self, images, concepts):
            return [0.0] * len(images)

    items = load_coco_captions(coco["captions"], coco["images"])
    out = tmp_path / "tiny.jsonl"
    stats = run_pipeline(items, out, PipelineConfig(pipeline="p1"), llm, AlwaysAbsent(), progress=False)
    assert stats.records_written == 0 and not out.exists()  # nothing valid: no file at all
    assert sum(stats.rejects.values()) >= len(items)  # every item rejected, each one counted
    assert stats.rejects.get("propose:malformed", 0) + stats.rejects.get("rewrite:no_concept", 0) > 0
    qa = load_vqa_no_items(coco["questions"], coco["annotations"], coco["captions"], coco["images"])
    stats = run_pipeline(qa, tmp_path / "p2.jsonl", PipelineConfig(pipeline="p2"), llm, progress=False)
    assert stats.records_written == 0 and sum(stats.rejects.values()) > 0


def test_parse_object_list_is_strict():
    assert parse_object_list('Sure! ["Fork", "dog"] are plausible', 3) == ["fork", "dog"]
    assert parse_object_list("fork, dog", 3) is None
    assert parse_object_list("[]", 3) is None and parse_object_list(None, 3) is None


def test_tiny_random_mllm_reads_yes_no_probabilities_and_pipeline_rejects_gibberish(coco, tmp_path):
    import torch

    from negation_encoder.data.llm import TransformersMLLM
    from negation_encoder.testing.tiny import build_vision_chat_lm

    model, processor = build_vision_chat_lm(seed=0)
    model.save_pretrained(tmp_path / "mllm")
    processor.save_pretrained(tmp_path / "mllm")
    mllm = TransformersMLLM(str(tmp_path / "mllm"), image_root=coco["images"], batch_size=2)  # from_pretrained path
    images = [f"COCO_train2014_{i:012d}.jpg" for i in range(3)]
    probs = mllm.presence_probability(images, ["dog", "couch", "fork"])
    assert len(probs) == 3 and all(0.0 < p < 1.0 for p in probs)
    # the same number by hand: softmax over the vocabulary, P(yes) / (P(yes) + P(no)) at the next token
    tok = processor.tokenizer
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text",
                                                               "text": load_prompt("verify_presence").format(concept="dog")}]}]
    from PIL import Image

    enc = processor(images=[Image.open(coco["images"] / images[0]).convert("RGB")],
                    text=[processor.apply_chat_template(conv, add_generation_prompt=True)], return_tensors="pt")
    with torch.no_grad():
        p = model(**enc).logits[0, -1].softmax(-1)
    yes, no = p[tok.convert_tokens_to_ids("yes")], p[tok.convert_tokens_to_ids("no")]
    assert probs[0] == pytest.approx((yes / (yes + no)).item(), rel=1e-4)
    llm_model, llm_tok = build_chat_lm(seed=1, words=["a", "dog", "with", "fork", "photo", "[", "]", '"', ","])
    stats = run_pipeline(load_coco_captions(coco["captions"], coco["images"]), tmp_path / "p1.jsonl",
                         PipelineConfig(pipeline="p1", confidence=0.0), PromptedLLM(TransformersChat(llm_model, llm_tok)),
                         mllm, progress=False)
    assert stats.records_written == 0 and sum(stats.rejects.values()) >= 6


def test_unreachable_server_is_one_line_exit_1_and_leaves_no_files(coco, tmp_path, capsys):
    out = tmp_path / "gen" / "p2.jsonl"
    code = main(["generate", "p2", "--coco-captions", str(coco["captions"]), "--images", str(coco["images"]),
                 "--vqa-questions", str(coco["questions"]), "--vqa-annotations", str(coco["annotations"]),
                 "--llm", "openai:m@http://127.0.0.1:9", "--max-retries", "1", "--timeout", "5",
                 "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0, err
    assert "http://127.0.0.1:9/v1: server unreachable after 1 retries" in err
    left = sorted(p.name for p in out.parent.iterdir()) if out.parent.exists() else []
    assert left == [], f"a failed run left files behind: {left}"


def test_out_in_a_missing_folder_is_created(coco, server, tmp_path):
    out = tmp_path / "new" / "deeper" / "presence.jsonl"
    assert _gen(coco, "presence", out, server) == 0
    assert read_records(out) and out.with_name(out.name + ".done").exists()


def _instances(tmp_path):
    """A COCO instances file: image 0 is the dog-on-a-couch caption's; 6-9 hold a fork."""
    cats = {1: "dog", 2: "couch", 3: "fork", 4: "person", 5: "car", 6: "traffic light"}
    images = {0: ({1, 2}, "COCO_train2014_000000000000.jpg"), 6: ({1, 2, 3}, "a.jpg"), 7: ({1, 3, 4, 5}, "b.jpg"),
              8: ({3}, "c.jpg"), 9: ({1, 3}, "d.jpg"), 10: ({1, 2, 6}, "e.jpg")}
    anns = [{"id": 500 + 10 * i + c, "image_id": i, "category_id": c, "bbox": [0, 0, 1, 1]}
            for i, (cs, _) in images.items() for c in sorted(cs)]
    path = tmp_path / "instances_train2014.json"
    path.write_text(json.dumps({"images": [{"id": i, "file_name": f} for i, (_, f) in images.items()],
                                "categories": [{"id": c, "name": n} for c, n in cats.items()], "annotations": anns}))
    return path


def test_annotation_miner_ranks_closest_images_with_the_concept(tmp_path):
    from negation_encoder.data.distractors import AnnotationDistractorMiner, load_coco_instances
    from negation_encoder.data.pipelines import CaptionItem, DistractorSource

    miner = AnnotationDistractorMiner.from_instances(_instances(tmp_path))
    assert isinstance(miner, DistractorSource)
    item = CaptionItem("c0", "COCO_train2014_000000000000.jpg", "A dog sitting on a red couch.")
    assert miner.caption_objects(item) == {"dog", "couch"}
    # shares dog+couch > shares dog with nothing else > shares dog with 2 others > shares nothing
    assert miner.distractors(item, "fork", 10) == ["a.jpg", "d.jpg", "b.jpg", "c.jpg"]
    assert miner.distractors(item, "fork", 2) == ["a.jpg", "d.jpg"]
    assert miner.distractors(CaptionItem("c1", "a.jpg", item.caption), "fork", 1) == ["d.jpg"]  # never its own
    assert miner.distractors(item, "bus", 3) == []  # no image has one
    assert miner.distractors(CaptionItem("c2", "x.jpg", "a traffic light"), "dog", 1) == ["e.jpg"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [],
                               "annotations": [{"image_id": 1, "category_id": 9}]}))
    with pytest.raises(InputError, match=r"bad\.json: annotations\[0\] refers to image_id 1 / category_id 9"):
        load_coco_instances(bad)


class _FixedLLM:
    """Proposes 'fork' for every caption and rewrites with fixed cue frames (one frame per pair)."""

    name, prompt_version = "fixed", "v0"

    def propose_objects(self, captions, k):
        return [["fork"] for _ in captions]

    def rewrite(self, requests):
        return [f"{r.caption} with no {r.concept}" if r.kind != "affirm" else f"{r.caption} with a {r.concept}"
                for r in requests]


class _NoForkMLLM:
    name, prompt_version = "fixed-mllm", "v0"

    def presence_probability(self, images, concepts):
        return [0.0 if c == "fork" else 1.0 for c in concepts]


def test_pipeline_attaches_mined_distractor_images(coco, tmp_path):
    from negation_encoder.data.distractors import AnnotationDistractorMiner

    items = load_coco_captions(coco["captions"], coco["images"])[:1]
    miner = AnnotationDistractorMiner.from_instances(_instances(tmp_path))
    out = tmp_path / "p1.jsonl"
    stats = run_pipeline(items, out, PipelineConfig("p1", distractors_per_record=2), _FixedLLM(), _NoForkMLLM(),
                         progress=False, distractors=miner)
    (rec,) = read_records(out)
    assert rec.distractor_images == ["a.jpg", "d.jpg"] and rec.image not in rec.distractor_images
    assert rec.provenance["distractor_source"] == "coco-instances-miner"
    assert stats.stages["distractor_images"] == 2


def test_compositional_prompt_is_a_versioned_file_with_both_objects():
    from negation_encoder.data.backends import RewriteRequest
    from negation_encoder.data.llm import PromptedLLM

    seen = []

    class _Chat:
        name = "echo"

        def chat(self, conversations, max_new_tokens=64):
            seen.extend(c[-1]["content"] for c in conversations)
            return ['"A dog on a couch with a fork but no dog."' for _ in conversations]

    llm = PromptedLLM(_Chat())
    out = llm.rewrite([RewriteRequest("A dog on a couch.", "dog", "compositional", detail={"affirm": "fork", "negate": "dog"})])
    assert out == ["A dog on a couch with a fork but no dog."]
    assert seen[0] == load_prompt("rewrite_compositional").format(caption="A dog on a couch.", affirm="fork", negate="dog")
    assert "there is a fork in the photo and there is no dog in the photo" in seen[0]


@pytest.mark.parametrize("kw,needle", [({"k": 0}, "k must be a number >= 1, got 0"),
                                       ({"confidence": 1.5}, "confidence must be a probability in [0, 1], got 1.5"),
                                       ({"pipeline": "p9"}, "pipeline must be one of p1, rand_p1, p2, presence")])
def test_pipeline_config_validates_itself(kw, needle):
    from negation_encoder.data.pipelines import PipelineConfig
    from negation_encoder.errors import InputError

    with pytest.raises(InputError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        PipelineConfig(**kw)
