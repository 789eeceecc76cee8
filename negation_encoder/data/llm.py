"""Real LLM / MLLM backends behind the pipeline protocols (`backends.TextLLM`, `backends.VisionLLM`).

Two engines for each: local transformers models, and OpenAI-compatible HTTP servers (vLLM, TGI,
llama.cpp), which is how generation scales past one machine. Prompts are versioned package files
(`negation_encoder/prompts/<name>.v<N>.txt`); the version is recorded in every record's provenance.

Malformed model output (not JSON, empty) becomes None, which the pipelines count as a reject.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import torch

from ..errors import RunFailed
from ..prompt_files import PROMPT_VERSION, load_prompt
from ..yesno import yes_no_token_ids, yes_share, yes_share_from_logprobs
from .backends import RewriteRequest


class ChatBackend(Protocol):
    name: str

    def chat(self, conversations: list[list[dict]], max_new_tokens: int = 64) -> list[str]:
        ...


# ------------------------------------------------------------------------------------------------
# text LLM: prompts + parsing on top of any chat engine

_JSON_LIST = re.compile(r"\[[^\[\]]*\]", re.S)


def parse_object_list(text: str | None, k: int) -> list[str] | None:
    """The first JSON list of strings in `text`, lower-cased, at most k; None if there is none."""
    if not text:
        return None
    for match in _JSON_LIST.finditer(text):
        try:
            items = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(items, list) and items and all(isinstance(x, str) and x.strip() for x in items):
            return [x.strip().lower() for x in items][:k]
    return None


def clean_caption(text: str | None) -> str | None:
    """First non-empty line, without a 'Caption:' prefix or surrounding quotes."""
    if not text:
        return None
    for line in text.strip().splitlines():
        line = re.sub(r"^\s*(new\s+)?caption\s*:\s*", "", line.strip(), flags=re.I).strip().strip('"').strip()
        if line:
            return line
    return None


_REWRITE_PROMPT = {"absence": "rewrite_absence", "affirm": "rewrite_affirm", "presence": "rewrite_presence",
                   "attribute": "rewrite_vqa", "relation": "rewrite_vqa", "action": "rewrite_vqa",
                   "attribute_affirm": "rewrite_vqa_affirm", "relation_affirm": "rewrite_vqa_affirm",
                   "action_affirm": "rewrite_vqa_affirm", "compositional": "rewrite_compositional",
                   "t2i": "rewrite_t2i", "t2i_affirm": "rewrite_t2i_affirm", "referring": "rewrite_referring"}


class PromptedLLM:
    """`TextLLM` over a chat engine: versioned prompt templates in, parsed answers out."""

    def __init__(self, chat: ChatBackend, version: str = PROMPT_VERSION):
        self.chat_backend = chat
        self.name = chat.name
        self.prompt_version = version

    def propose_objects(self, captions: list[str], k: int) -> list[list[str] | None]:
        template = load_prompt("propose_objects", self.prompt_version)
        convs = [[{"role": "user", "content": template.format(caption=c, k=k)}] for c in captions]
        return [parse_object_list(t, k) for t in self.chat_backend.chat(convs, max_new_tokens=48)]

    def rewrite(self, requests: list[RewriteRequest]) -> list[str | None]:
        convs = []
        for r in requests:
            template = load_prompt(_REWRITE_PROMPT[r.kind], self.prompt_version)
            slots = {k: v for k, v in r.detail.items() if k in ("affirm", "negate")}  # compositional requests
            convs.append([{"role": "user", "content": template.format(
                caption=r.caption, concept=r.concept, question=r.question or "", answer=r.answer or "", **slots)}])
        return [clean_caption(t) for t in self.chat_backend.chat(convs, max_new_tokens=64)]


# ------------------------------------------------------------------------------------------------
# transformers engines


def _load_causal_lm(model, tokenizer, device_map, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(model, str):
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
        kwargs = {"device_map": device_map} if device_map else {}
        if dtype:
            kwargs["dtype"] = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        model = AutoModelForCausalLM.from_pretrained(model, **kwargs)
    return model.eval(), tokenizer


class TransformersChat:
    """A local causal LM with its chat template: left padding, batched, greedy by default."""

    def __init__(self, model, tokenizer=None, batch_size: int = 16, device_map: str | None = None,
                 dtype: str | None = None, do_sample: bool = False, seed: int = 0):
        self.model, self.tokenizer = _load_causal_lm(model, tokenizer, device_map, dtype)
        self.name = f"transformers:{getattr(self.model.config, '_name_or_path', '') or type(self.model).__name__}"
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size, self.do_sample, self.seed = batch_size, do_sample, seed

    @torch.no_grad()
    def chat(self, conversations: list[list[dict]], max_new_tokens: int = 64) -> list[str]:
        out: list[str] = []
        device = next(self.model.parameters()).device
        for i in range(0, len(conversations), self.batch_size):
            texts = [self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                     for c in conversations[i: i + self.batch_size]]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            if self.do_sample:
                torch.manual_seed(self.seed + i)
            gen = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=self.do_sample,
                                      pad_token_id=self.tokenizer.pad_token_id)
            out += self.tokenizer.batch_decode(gen[:, enc.input_ids.shape[1]:], skip_special_tokens=True)
        return out


class TransformersMLLM:
    """`VisionLLM` on AutoModelForImageTextToText: P(yes) from the next-token probabilities of
    "yes" vs "no" after the question (never by parsing generated text)."""

    def __init__(self, model, processor=None, image_root: str | os.PathLike = ".", batch_size: int = 8,
                 device_map: str | None = None, dtype: str | None = None, version: str = PROMPT_VERSION):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if isinstance(model, str):
            processor = processor or AutoProcessor.from_pretrained(model)
            kwargs = {"device_map": device_map} if device_map else {}
            if dtype:
                kwargs["dtype"] = getattr(torch, dtype)
            model = AutoModelForImageTextToText.from_pretrained(model, **kwargs)
        self.model, self.processor = model.eval(), processor
        self.image_root = Path(image_root)
        self.batch_size, self.prompt_version = batch_size, version
        self.name = f"transformers:{getattr(model.config, '_name_or_path', '') or type(model).__name__}"
        tok = getattr(processor, "tokenizer", processor)
        tok.padding_side = "left"
        self.yes_ids, self.no_ids = yes_no_token_ids(tok)

    @torch.no_grad()
    def presence_probability(self, images: list[str], concepts: list[str]) -> list[float]:
        from PIL import Image

        template = load_prompt("verify_presence", self.prompt_version)
        device = next(self.model.parameters()).device
        out: list[float] = []
        for i in range(0, len(images), self.batch_size):
            imgs = [Image.open(self.image_root / k).convert("RGB") for k in images[i: i + self.batch_size]]
            convs = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": template.format(concept=c)}]}]
                     for c in concepts[i: i + self.batch_size]]
            prompts = [self.processor.apply_chat_template(c, add_generation_prompt=True) for c in convs]
            enc = self.processor(images=imgs, text=prompts, return_tensors="pt", padding=True).to(device)
            out += yes_share(self.model(**enc).logits[:, -1, :], self.yes_ids, self.no_ids)
        return out


# ------------------------------------------------------------------------------------------------
# OpenAI-compatible HTTP engines (vLLM, TGI, llama.cpp)


class OpenAIChat:
    """Chat completions on an OpenAI-compatible server (vLLM, TGI, llama.cpp) through the `openai`
    client, which brings timeouts, bounded retries with exponential backoff on connection errors,
    408/409/429/5xx, and connection pooling; we add bounded concurrency across conversations.

    The API key is read from the environment variable named by `api_key_env` and never logged (local
    servers ignore it; "EMPTY" is sent when it is unset). A server that stays unreachable, or answers
    with an error, fails the run with one line (`RunFailed`).
    """

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 max_retries: int = 4, concurrency: int = 8, temperature: float = 0.0, seed: int = 0):
        from openai import OpenAI

        base = base_url.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        self.model, self.timeout, self.max_retries = model, timeout, max_retries
        self.concurrency, self.temperature, self.seed = concurrency, temperature, seed
        self.name = f"openai:{model}"
        self._client = OpenAI(base_url=self.base_url, api_key=os.environ.get(api_key_env) or "EMPTY",
                              timeout=timeout, max_retries=max_retries)

    def complete(self, messages: list[dict], max_new_tokens: int = 64, **extra) -> dict:
        """One chat completion as a plain dict (`choices[0].message.content`, `choices[0].logprobs`)."""
        import openai

        try:
            resp = self._client.chat.completions.create(model=self.model, messages=messages, max_tokens=max_new_tokens,
                                                        temperature=self.temperature, seed=self.seed, **extra)
        except openai.APIStatusError as e:
            raise RunFailed(f"{self.base_url}: HTTP {e.status_code} from the server after up to {self.max_retries} "
                            f"retries ({str(e.message).splitlines()[0][:200]})") from None
        except openai.APIConnectionError as e:
            raise RunFailed(f"{self.base_url}: server unreachable after {self.max_retries} retries "
                            f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
        return resp.model_dump()

    def chat(self, conversations: list[list[dict]], max_new_tokens: int = 64) -> list[str]:
        def one(messages):
            body = self.complete(messages, max_new_tokens)
            try:
                return body["choices"][0]["message"].get("content") or ""
            except (KeyError, IndexError, TypeError):
                return ""  # malformed answer: counted as a reject downstream

        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return list(pool.map(one, conversations))


def image_data_url(path: str | os.PathLike) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.open(path).convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class OpenAIMLLM:
    """`VisionLLM` over an OpenAI-compatible server: the image goes as a data URL, and P(yes) is
    read from the first token's top log-probabilities (vLLM and TGI return them); a server that gives
    no log-probabilities falls back to the first word of the answer (1.0 / 0.0)."""

    def __init__(self, chat: OpenAIChat, image_root: str | os.PathLike = ".", version: str = PROMPT_VERSION):
        self.chat_backend, self.image_root = chat, Path(image_root)
        self.name, self.prompt_version = chat.name, version

    def presence_probability(self, images: list[str], concepts: list[str]) -> list[float]:
        template = load_prompt("verify_presence", self.prompt_version)

        def one(pair):
            key, concept = pair
            messages = [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": image_data_url(self.image_root / key)}},
                {"type": "text", "text": template.format(concept=concept)}]}]
            try:
                body = self.chat_backend.complete(messages, max_new_tokens=1, logprobs=True, top_logprobs=10)
                choice = body["choices"][0]
                top = (choice.get("logprobs") or {}).get("content") or []
                if top:
                    p = yes_share_from_logprobs(top[0].get("top_logprobs", []))
                    if p is not None:
                        return p
                text = (choice["message"].get("content") or "").strip().lower()
                return 1.0 if text.startswith("yes") else 0.0 if text.startswith("no") else 0.5
            except (KeyError, IndexError, TypeError):
                return 0.5  # unusable answer: neither verified absent nor present

        with ThreadPoolExecutor(max_workers=max(1, self.chat_backend.concurrency)) as pool:
            return list(pool.map(one, zip(images, concepts, strict=True)))
