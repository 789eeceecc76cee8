"""Offline tokenizer and tiny-but-real models.

Nothing can be downloaded from the Hub here, in CI or on a user's air-gapped box, yet every code path
must run through the real classes (`CLIPTokenizer`, `CLIPModel`, diffusers pipelines, CLIPSeg, BLIP).
This module builds them from configs written in code. Each builder seeds torch itself, so the same
call always returns the same weights.

The CLIP eos pooling trap: `CLIPTextModel` pools the hidden state at the first `eos_token_id`
(or at `argmax(input_ids)` when the legacy `eos_token_id=2` is set). Our tokenizer therefore puts
`<|startoftext|>` and `<|endoftext|>` at the two highest ids, as OpenAI's vocabulary does, and every
config built here sets `eos_token_id` to the real eos id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

import torch
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
            for pair in zip(symbols, symbols[1:]):
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


def tiny_clip_text_config(
    tokenizer: CLIPTokenizer,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    intermediate_size: int = 37,
    projection_dim: int = 24,
    max_position_embeddings: int = MAX_POSITIONS,
):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        projection_dim=projection_dim,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def tiny_clip_config(
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
    from transformers import CLIPConfig, CLIPVisionConfig

    text = tiny_clip_text_config(
        tokenizer,
        hidden_size=text_hidden_size,
        num_hidden_layers=text_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=text_hidden_size * 2 + 5,
        projection_dim=projection_dim,
    )
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


def build_clip_model(seed: int = 0, tokenizer: CLIPTokenizer | None = None, **config_kwargs):
    """A tiny `CLIPModel` (text 32 wide, vision 40 wide, projection 24 by default)."""
    from transformers import CLIPModel

    tokenizer = tokenizer or build_clip_tokenizer()
    torch.manual_seed(seed)
    return CLIPModel(tiny_clip_config(tokenizer, **config_kwargs)).eval()


def build_clip_text_model(seed: int = 0, tokenizer: CLIPTokenizer | None = None, **config_kwargs):
    from transformers import CLIPTextModel

    tokenizer = tokenizer or build_clip_tokenizer()
    torch.manual_seed(seed)
    return CLIPTextModel(tiny_clip_text_config(tokenizer, **config_kwargs)).eval()


def build_clip_text_model_with_projection(
    seed: int = 0, tokenizer: CLIPTokenizer | None = None, **config_kwargs
):
    from transformers import CLIPTextModelWithProjection

    tokenizer = tokenizer or build_clip_tokenizer()
    torch.manual_seed(seed)
    return CLIPTextModelWithProjection(tiny_clip_text_config(tokenizer, **config_kwargs)).eval()


def build_clip_image_processor(image_size: int = 32):
    """`CLIPImageProcessor` sized for tiny models (the PIL backend; no torchvision needed)."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )


# --------------------------------------------------------------------------------------------------
# diffusers: SD 1.x and SDXL components


def build_vae(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=[4, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=2,
        sample_size=32,
    )


def build_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def build_unet(seed: int, cross_attention_dim: int, **overrides):
    """A two-block `UNet2DConditionModel` (4 latent channels, 16x16 latents) conditioned at `cross_attention_dim`."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        norm_num_groups=2,
        **overrides,
    )


def build_sd_components(seed: int = 0, text_hidden_size: int = 32) -> dict:
    """Components for `StableDiffusionPipeline` (SD 1.x layout) with a tiny UNet, VAE and CLIP text encoder."""
    tokenizer = build_clip_tokenizer()
    unet = build_unet(seed, cross_attention_dim=text_hidden_size, attention_head_dim=2)
    return {
        "unet": unet,
        "scheduler": build_scheduler(),
        "vae": build_vae(seed),
        "text_encoder": build_clip_text_model(seed, tokenizer, hidden_size=text_hidden_size),
        "tokenizer": tokenizer,
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
    }


def build_sdxl_components(seed: int = 0, hidden_size: int = 32, hidden_size_2: int = 32, projection_dim: int = 32) -> dict:
    """Components for `StableDiffusionXLPipeline`: two CLIP text encoders and a text_time UNet.

    The UNet's `cross_attention_dim` is the sum of the two encoders' widths and its add-embedding
    input is `6 * addition_time_embed_dim + projection_dim` of `text_encoder_2`, as in SDXL.
    """
    tokenizer = build_clip_tokenizer()
    time_dim = 8
    unet = build_unet(
        seed,
        cross_attention_dim=hidden_size + hidden_size_2,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * time_dim + projection_dim,
    )
    return {
        "unet": unet,
        "scheduler": build_scheduler(),
        "vae": build_vae(seed),
        "text_encoder": build_clip_text_model(seed, tokenizer, hidden_size=hidden_size),
        "text_encoder_2": build_clip_text_model_with_projection(
            seed + 1, tokenizer, hidden_size=hidden_size_2, projection_dim=projection_dim
        ),
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer,
        "image_encoder": None,
        "feature_extractor": None,
    }


# --------------------------------------------------------------------------------------------------
# CLIPSeg and the BLIP VQA judge


def build_clipseg(seed: int = 0, tokenizer: CLIPTokenizer | None = None, projection_dim: int = 24):
    """A tiny `CLIPSegForImageSegmentation` (text 32 wide, vision 40 wide, 3 vision layers)."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    tokenizer = tokenizer or build_clip_tokenizer()
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=69,  # as tiny_clip_config's text tower: CLIPSeg is built on a CLIP
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(
        hidden_size=40, num_hidden_layers=3, num_attention_heads=4, intermediate_size=83, image_size=32, patch_size=8
    )
    config = CLIPSegConfig(
        text_config=text,
        vision_config=vision,
        projection_dim=projection_dim,
        extract_layers=(1, 2),
        reduce_dim=16,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
    )
    torch.manual_seed(seed)
    return CLIPSegForImageSegmentation(config).eval()


def build_bert_tokenizer(words: Iterable[str] | None = None):
    """A WordPiece `BertTokenizer` (what BLIP's text side reads) over a word list, built offline."""
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = sorted(_words_from(words if words is not None else DEFAULT_WORDS) | {"yes", "no", "?", "."})
    vocab = {tok: i for i, tok in enumerate(specials + pieces)}
    return BertTokenizer(vocab=vocab)


def build_blip_vqa(seed: int = 0, image_size: int = 32):
    """A tiny `BlipForQuestionAnswering` and its `BlipProcessor`: the offline VQA judge."""
    from transformers import (
        BlipConfig,
        BlipForQuestionAnswering,
        BlipImageProcessor,
        BlipProcessor,
    )

    tokenizer = build_bert_tokenizer()
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        encoder_hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        bos_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=67,
                  image_size=image_size, patch_size=8)
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=24)
    torch.manual_seed(seed)
    model = BlipForQuestionAnswering(config).eval()
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer,
    )
    return model, processor


def build_chat_lm(seed: int = 0, words: Iterable[str] | None = None, hidden_size: int = 16, num_layers: int = 1,
                  num_heads: int = 2):
    """A tiny random `LlamaForCausalLM` and a word-level tokenizer with a chat template (the data
    pipelines' local LLM backend in tests and benchmarks). Its output is gibberish by design."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = ["<pad>", "<s>", "</s>", "<unk>"] + sorted(_words_from(words if words is not None else DEFAULT_WORDS))
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                        unk_token="<unk>")
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
                         max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(config).eval(), tokenizer


def build_vision_chat_lm(seed: int = 0, image_size: int = 32):
    """A tiny random `LlavaForConditionalGeneration` (an `AutoModelForImageTextToText`) and its
    `LlavaProcessor` with a chat template: the pipelines' local MLLM backend in tests."""
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    _, tokenizer = build_chat_lm(seed, words=["is there a in this image answer yes or no ? ."] + list(DEFAULT_WORDS))
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    template = ("{% for m in messages %}{{ m['role'] }}: {% if m['content'] is string %}{{ m['content'] }}{% else %}"
                "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }}{% endif %}"
                "{% endfor %}{% endif %}\n{% endfor %}assistant:")
    tokenizer.chat_template = template
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=image_size, patch_size=16)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-1, vision_feature_select_strategy="full")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    processor = LlavaProcessor(image_processor=build_clip_image_processor(image_size), tokenizer=tokenizer,
                               patch_size=16, vision_feature_select_strategy="full", chat_template=template,
                               num_additional_image_tokens=1)
    return model, processor
