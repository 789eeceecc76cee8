"""VQA judges behind one protocol: the probability that the answer to a question about an image is yes.

docs/design.md reads a judge the way VQAScore reads a VLM: take the next-token distribution at the first
answer token and compare P("yes") with P("no"); `yes_probability` returns P(yes) / (P(yes) + P(no)),
so "yes" is exactly `p > 0.5` (`negation_encoder.yesno.is_yes`). Nothing is parsed from generated text.

- `BlipJudge`: `BlipForQuestionAnswering` (e.g. Salesforce/blip-vqa-base, NegationCLIP's judge). The
  question is encoded against the image, and the answer decoder runs one step from its BOS token.
- `VLMJudge`: any transformers image-text-to-text chat model (`AutoModelForImageTextToText` +
  `AutoProcessor`: PaliGemma, Qwen2.5-VL, LLaVA-1.6, ...), the question in its chat template.

Both give `choice_likelihood` for TIFA's multiple-choice questions: the log-likelihood of each choice
as the answer. TIFA's default judge (mPLUG) is not offered: it does not load from transformers without
remote code, and this project never passes `trust_remote_code`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from PIL import Image

from negation_encoder.devices import resolve
from negation_encoder.errors import InputError
from negation_encoder.yesno import yes_no_token_ids, yes_share

JUDGE_KINDS = ("blip", "vlm")


@runtime_checkable
class Judge(Protocol):
    name: str

    def yes_probability(self, images: list[Image.Image], questions: list[str]) -> list[float]:
        """P(yes) / (P(yes) + P(no)) for each (image, question) pair."""
        ...

    def choice_likelihood(self, images: list[Image.Image], questions: list[str],
                          choices_per_question: list[list[str]]) -> list[list[float]]:
        """The log-likelihood of each choice as the answer to its (image, question)."""
        ...


def _check_pairs(images: Sequence, questions: Sequence, choices: Sequence | None = None) -> None:
    if len(images) != len(questions) or (choices is not None and len(choices) != len(questions)):
        raise ValueError(f"one image per question expected: {len(images)} images, {len(questions)} questions"
                         + (f", {len(choices)} choice lists" if choices is not None else ""))


def _yes_no(tokenizer, name: str) -> tuple[list[int], list[int]]:
    try:
        return yes_no_token_ids(tokenizer)
    except ValueError:
        raise InputError(f"judge {name}: its tokenizer has no single-token 'yes' and 'no', so P(yes) vs P(no) "
                         f"at the first answer token cannot be read; use a VQA judge that answers yes/no") from None


def _load(loader, path: str, what: str, **kwargs):
    try:
        return loader.from_pretrained(path, **kwargs)
    except (OSError, ValueError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"judge {path}: cannot load its {what} ({first})") from None


def _load_judge(model, processor, model_class, what: str, device: str | None, dtype: str):
    """(name, model, processor, device, dtype): a judge given as a path is loaded with its processor in
    the inference dtype for `device`; a judge given as a model keeps its config's name."""
    from transformers import AutoProcessor

    device_t, dtype_t = resolve(device, dtype)
    if isinstance(model, str):
        name = model
        processor = processor or _load(AutoProcessor, model, "processor")
        model = _load(model_class, model, what, dtype=dtype_t)
    else:
        name = getattr(model.config, "_name_or_path", "") or type(model).__name__
    return name, model, processor, device_t, dtype_t


class BlipJudge:
    """`BlipForQuestionAnswering` read at its first answer token (the decoder one step from BOS)."""

    def __init__(self, model, processor=None, batch_size: int = 16, device: str | None = None, dtype: str = "auto"):
        from transformers import BlipForQuestionAnswering

        self.name, model, processor, self.device, self.dtype = _load_judge(
            model, processor, BlipForQuestionAnswering, "BlipForQuestionAnswering weights", device, dtype)
        if processor is None:
            raise ValueError("BlipJudge needs the model's processor")
        self.model = model.to(self.device, self.dtype).eval()
        self.processor, self.batch_size = processor, batch_size
        self.tokenizer = processor.tokenizer
        self.yes_ids, self.no_ids = _yes_no(self.tokenizer, self.name)
        self.bos_id = model.config.text_config.bos_token_id

    def _batches(self, questions: list[str]) -> list[list[int]]:
        """Indices batched by question length, so no question is ever padded.

        transformers 5.23's BLIP answer decoder lets cross-attention see padded question positions
        despite `encoder_attention_mask` (measured: a padded batch moves a logit by ~3e-3), which would
        make an answer depend on its batch-mates; equal-length batches make it exact.
        """
        lengths = [len(ids) for ids in self.tokenizer(questions)["input_ids"]]
        groups: dict[int, list[int]] = {}
        for k, n in enumerate(lengths):
            groups.setdefault(n, []).append(k)
        return [g[i: i + self.batch_size] for _, g in sorted(groups.items()) for i in range(0, len(g), self.batch_size)]

    def _encode(self, images: list[Image.Image], questions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Question states conditioned on the image, and their mask."""
        enc = self.processor(images=images, text=questions, return_tensors="pt", padding=True)
        pix = enc["pixel_values"].to(self.device, self.dtype)
        image_embeds = self.model.vision_model(pixel_values=pix)[0]
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
        mask = enc["attention_mask"].to(self.device)
        states = self.model.text_encoder(input_ids=enc["input_ids"].to(self.device), attention_mask=mask,
                                         encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask,
                                         return_dict=False)[0]
        return states, mask

    @torch.no_grad()
    def yes_probability(self, images: list[Image.Image], questions: list[str]) -> list[float]:
        _check_pairs(images, questions)
        out: list[float] = [0.0] * len(questions)
        for idx in self._batches(questions):
            states, mask = self._encode([images[k] for k in idx], [questions[k] for k in idx])
            bos = torch.full((states.shape[0], 1), self.bos_id, dtype=torch.long, device=self.device)
            logits = self.model.text_decoder(input_ids=bos, encoder_hidden_states=states,
                                             encoder_attention_mask=mask).logits[:, -1, :]
            for k, p in zip(idx, yes_share(logits, self.yes_ids, self.no_ids), strict=True):
                out[k] = p
        return out

    @torch.no_grad()
    def choice_likelihood(self, images: list[Image.Image], questions: list[str],
                          choices_per_question: list[list[str]]) -> list[list[float]]:
        """Sum of the decoder's log-probabilities of the choice's tokens and its closing [SEP] (so a
        choice that is a prefix of another is not favoured), from BOS, given the question."""
        _check_pairs(images, questions, choices_per_question)
        out: list[list[float]] = [[] for _ in questions]
        for idx in self._batches(questions):
            states, mask = self._encode([images[k] for k in idx], [questions[k] for k in idx])
            chunk = [choices_per_question[k] for k in idx]
            rows = [j for j, cs in enumerate(chunk) for _ in cs]
            flat = [c for cs in chunk for c in cs]
            enc = self.tokenizer(flat, return_tensors="pt", padding=True)
            ids, amask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
            ids[:, 0] = self.bos_id  # [CLS] -> the decoder's BOS, as BLIP's decoder is fed
            index = torch.tensor(rows, device=self.device)
            logits = self.model.text_decoder(input_ids=ids, attention_mask=amask, encoder_hidden_states=states[index],
                                             encoder_attention_mask=mask[index]).logits
            logp = logits[:, :-1].float().log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
            scores = (logp * amask[:, 1:]).sum(-1).tolist()
            k = 0
            for q, cs in zip(idx, chunk, strict=True):
                out[q] = scores[k: k + len(cs)]
                k += len(cs)
        return out


class VLMJudge:
    """A chat VLM (`AutoModelForImageTextToText`): P("Yes") vs P("No") at the first answer token after the
    chat template's generation prompt, as VQAScore reads it."""

    def __init__(self, model, processor=None, batch_size: int = 8, device: str | None = None, dtype: str = "auto",
                 yes_no_suffix: str = " Answer yes or no.", choice_suffix: str = " Answer with one of: {choices}."):
        from transformers import AutoModelForImageTextToText

        self.name, model, processor, self.device, self.dtype = _load_judge(
            model, processor, AutoModelForImageTextToText, "image-text-to-text weights", device, dtype)
        if processor is None or not hasattr(processor, "tokenizer"):
            raise InputError(f"judge {self.name}: needs a multimodal processor with a tokenizer")
        self.model = model.to(self.device, self.dtype).eval()
        self.processor, self.batch_size = processor, batch_size
        self.tokenizer = processor.tokenizer
        self.yes_ids, self.no_ids = _yes_no(self.tokenizer, self.name)
        self.yes_no_suffix, self.choice_suffix = yes_no_suffix, choice_suffix

    def _prompt(self, text: str) -> str:
        conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        return self.processor.apply_chat_template(conv, add_generation_prompt=True)

    def _inputs(self, images: list[Image.Image], texts: list[str], side: str) -> dict:
        self.tokenizer.padding_side = side
        enc = self.processor(images=images, text=texts, return_tensors="pt", padding=True).to(self.device)
        if "pixel_values" in enc:
            enc["pixel_values"] = enc["pixel_values"].to(self.dtype)
        return enc

    @torch.no_grad()
    def yes_probability(self, images: list[Image.Image], questions: list[str]) -> list[float]:
        _check_pairs(images, questions)
        out: list[float] = []
        for i in range(0, len(questions), self.batch_size):
            prompts = [self._prompt(q + self.yes_no_suffix) for q in questions[i: i + self.batch_size]]
            enc = self._inputs(images[i: i + self.batch_size], prompts, "left")  # last position = first answer token
            out += yes_share(self.model(**enc).logits[:, -1, :], self.yes_ids, self.no_ids)
        return out

    @torch.no_grad()
    def choice_likelihood(self, images: list[Image.Image], questions: list[str],
                          choices_per_question: list[list[str]]) -> list[list[float]]:
        """Sum of log-probabilities of the choice's tokens after the generation prompt (right padding, so
        the answer starts where the prompt alone ends)."""
        _check_pairs(images, questions, choices_per_question)
        pairs = [(img, self._prompt(q + self.choice_suffix.format(choices=", ".join(cs))), c)
                 for img, q, cs in zip(images, questions, choices_per_question, strict=True) for c in cs]
        scores: list[float] = []
        for i in range(0, len(pairs), self.batch_size):
            imgs = [p[0] for p in pairs[i: i + self.batch_size]]
            prompts = [p[1] for p in pairs[i: i + self.batch_size]]
            full = [p[1] + p[2] for p in pairs[i: i + self.batch_size]]
            starts = self._inputs(imgs, prompts, "right")["attention_mask"].sum(-1)
            enc = self._inputs(imgs, full, "right")
            ends = enc["attention_mask"].sum(-1)
            logp = self.model(**enc).logits[:, :-1].float().log_softmax(-1)
            ids = enc["input_ids"][:, 1:]
            tok_logp = logp.gather(-1, ids[..., None])[..., 0]
            pos = torch.arange(ids.shape[1], device=ids.device)[None]
            keep = (pos >= (starts[:, None] - 1)) & (pos < (ends[:, None] - 1))
            scores += (tok_logp * keep).sum(-1).tolist()
        out, k = [], 0
        for cs in choices_per_question:
            out.append(scores[k: k + len(cs)])
            k += len(cs)
        return out


def load_judge(path: str, kind: str = "blip", batch_size: int = 16, device: str | None = None,
               dtype: str = "auto") -> BlipJudge | VLMJudge:
    """A judge from a model id or local folder; `kind` is `blip` or `vlm`."""
    if kind == "blip":
        return BlipJudge(path, batch_size=batch_size, device=device, dtype=dtype)
    if kind == "vlm":
        return VLMJudge(path, batch_size=batch_size, device=device, dtype=dtype)
    raise InputError(f"--judge-kind must be one of {', '.join(JUDGE_KINDS)}, got {kind!r}")
