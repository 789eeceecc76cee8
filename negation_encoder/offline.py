"""The offline CLIP tokenizer and CLIP configs, built in code (what the testbed itself needs).

Nothing can be downloaded from the Hub here, in CI or on a user's air-gapped box, yet every code path
must run through the real classes. This module builds a real `CLIPTokenizer` from BPE merges learned
in code, and `CLIPConfig`s sized by keyword. The test-only model builders (SD, SDXL, CLIPSeg, BLIP,
chat LMs) live apart, in `negation_encoder.testing.tiny`.

The CLIP eos pooling trap: `CLIPTextModel` pools the hidden state at the first `eos_token_id`
(or at `argmax(input_ids)` when the legacy `eos_token_id=2` is set). Our tokenizer therefore puts
`<|startoftext|>` and `<|endoftext|>` at the two highest ids, as OpenAI's vocabulary does, and every
config built here sets `eos_token_id` to the real eos id.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from functools import lru_cache

from transformers import CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
MAX_POSITIONS = 77

# A general English word list for tests and integrations; the testbed passes its own vocabulary.
DEFAULT_WORDS: tuple[str, ...] = tuple(
    """
    a an the of and or but with without no not none nor never neither isn't doesn't don't aren't
    is are was were there this that these those it its in on at by to from under over near next
    left right top bottom behind front above below beside between photo picture image scene
    features feature shows show showing contains contain containing has have having lacking free
    man woman dog cat car bus street road tree house table chair fork cup plate bird horse sky
    red green blue yellow black white small large big little one two three many some any
    riding running sitting standing wearing holding hat glasses light lights parking empty
    """.split()
)


def _words_from(texts: Iterable[str]) -> set[str]:
    """Lower-cased word pieces as CLIP's pre-tokenizer splits them (letters, digits, punctuation)."""
    pattern = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")
    out: set[str] = set()
    for text in texts:
        out.update(pattern.findall(text.lower()))
    return out


@lru_cache(maxsize=8)
def _vocab_and_merges(words: tuple[str, ...]) -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    """Learn BPE merges on `words` until each word is a single symbol (plain BPE training).

    Merges are applied by rank at tokenization time, so they must come from a real training run:
    hand-chaining each word left to right conflicts across words ("he" outranking "th" in "there").
    """
    byte_map = bytes_to_unicode()
    vocab: dict[str, int] = {}
    for ch in byte_map.values():
        vocab[ch] = len(vocab)
    for ch in byte_map.values():
        vocab[ch + "</w>"] = len(vocab)
    corpus: list[list[str]] = []
    for word in words:
        symbols = [byte_map[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        corpus.append(symbols)
    merges: list[tuple[str, str]] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for symbols in corpus:
            for pair in itertools.pairwise(symbols):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))  # deterministic tie-break
        merges.append(best)
        merged = best[0] + best[1]
        vocab.setdefault(merged, len(vocab))
        for i, symbols in enumerate(corpus):
            if len(symbols) < 2:
                continue
            out, j = [], 0
            while j < len(symbols):
                if j + 1 < len(symbols) and (symbols[j], symbols[j + 1]) == best:
                    out.append(merged)
                    j += 2
                else:
                    out.append(symbols[j])
                    j += 1
            corpus[i] = out
    vocab[BOS_TOKEN] = len(vocab)
    vocab[EOS_TOKEN] = len(vocab)  # the highest id, as in OpenAI's vocabulary
    return vocab, tuple(merges)


def build_clip_tokenizer(
    words: Iterable[str] | None = None, model_max_length: int = MAX_POSITIONS
) -> CLIPTokenizer:
    """A real byte-level BPE `CLIPTokenizer` whose merges spell out every word of `words` whole.

    Any other text still tokenizes (down to byte symbols), so nothing is ever `unk`.
    `<|endoftext|>` is the highest id and doubles as the pad token, as in openai/clip-vit-large-patch14.
    """
    pieces = _words_from(words if words is not None else DEFAULT_WORDS)
    vocab, merges = _vocab_and_merges(tuple(sorted(pieces)))
    return CLIPTokenizer(
        vocab=dict(vocab),
        merges=list(merges),
        unk_token=EOS_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=model_max_length,
    )


# --------------------------------------------------------------------------------------------------
# CLIP


def clip_text_config(
    tokenizer: CLIPTokenizer,
    text_hidden_size: int = 32,
    text_layers: int = 2,
    num_attention_heads: int = 4,
    intermediate_size: int | None = None,
    projection_dim: int = 24,
    max_position_embeddings: int = MAX_POSITIONS,
):
    """A `CLIPTextConfig` whose bos/eos/pad ids are the tokenizer's (eos pooling reads the right place)."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=text_hidden_size,
        num_hidden_layers=text_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size or 2 * text_hidden_size + 5,
        projection_dim=projection_dim,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def clip_config(
    tokenizer: CLIPTokenizer,
    text_hidden_size: int = 32,
    text_layers: int = 2,
    vision_hidden_size: int = 40,
    vision_layers: int = 2,
    projection_dim: int = 24,
    image_size: int = 32,
    patch_size: int = 8,
    num_attention_heads: int = 4,
):
    """A `CLIPConfig` with the same keyword names as every builder in `negation_encoder.testing.tiny`."""
    from transformers import CLIPConfig, CLIPVisionConfig

    text = clip_text_config(tokenizer, text_hidden_size=text_hidden_size, text_layers=text_layers,
                            num_attention_heads=num_attention_heads, projection_dim=projection_dim)
    vision = CLIPVisionConfig(
        hidden_size=vision_hidden_size,
        num_hidden_layers=vision_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=vision_hidden_size * 2 + 3,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=projection_dim,
    )
    return CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=projection_dim)
