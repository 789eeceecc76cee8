"""Reading a yes/no answer from a model's first answer token: one rule for the data pipelines' MLLM
backends and the text-to-image judges.

VQAScore's reading of a VLM, which docs/design.md's Neg Score rule follows: take the next-token distribution at
the first answer token and compare P("yes") with P("no"); the answer is yes iff
p = P(yes) / (P(yes) + P(no)) > 0.5. Nothing is parsed from generated text. Every single-token spelling
of each word counts ("yes", "Yes", " yes", ...), never the unknown token.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

YES_THRESHOLD = 0.5


def yes_no_token_ids(tokenizer) -> tuple[list[int], list[int]]:
    """Single-token spellings of "yes" / "no"; ValueError if the tokenizer has none for either."""
    ids: dict[str, set[int]] = {"yes": set(), "no": set()}
    for word in ids:
        for variant in (word, word.capitalize(), " " + word, " " + word.capitalize(), word.upper()):
            toks = tokenizer.encode(variant, add_special_tokens=False)
            if len(toks) == 1 and toks[0] != tokenizer.unk_token_id \
                    and tokenizer.decode(toks).strip().lower() == word:
                ids[word].add(toks[0])
    if not ids["yes"] or not ids["no"]:
        raise ValueError("the tokenizer has no single-token 'yes'/'no'; P(yes) vs P(no) cannot be read")
    return sorted(ids["yes"]), sorted(ids["no"])


def yes_share(logits: torch.Tensor, yes_ids: list[int], no_ids: list[int]) -> list[float]:
    """(N, vocab) first-answer-token logits -> P(yes) / (P(yes) + P(no)) per row."""
    probs = logits.float().softmax(-1)
    yes, no = probs[:, yes_ids].sum(-1), probs[:, no_ids].sum(-1)
    return (yes / (yes + no).clamp_min(1e-12)).tolist()


def yes_share_from_logprobs(top: Iterable[Mapping]) -> float | None:
    """The same rule on an OpenAI-compatible server's `top_logprobs` of the first token
    (`[{"token": " Yes", "logprob": -0.1}, ...]`); None when neither word is among them."""
    p = {"yes": 0.0, "no": 0.0}
    for cand in top:
        word = str(cand["token"]).strip().lower()
        if word in p:
            p[word] += math.exp(cand["logprob"])
    total = p["yes"] + p["no"]
    return p["yes"] / total if total > 0 else None


def is_yes(p_yes: float) -> bool:
    """The answer: yes iff P(yes) > P(no), i.e. the normalised yes-probability exceeds 0.5 (a tie is no)."""
    return p_yes > YES_THRESHOLD
