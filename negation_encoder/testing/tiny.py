"""Tiny-but-real models for tests and benchmarks, built offline and seeded.

Every code path must run through the real classes (`CLIPModel`, diffusers pipelines, CLIPSeg, BLIP,
Llava) without downloading anything. Each builder seeds torch itself, so the same call always returns
the same weights, and the CLIP family takes one set of keyword names (`seed`, `tokenizer`,
`text_hidden_size`, `text_layers`, `projection_dim`, ...) as `negation_encoder.offline.clip_config`.
The testbed never imports this module; it needs only the offline tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from transformers import CLIPTokenizer

from ..offline import (  # noqa: F401 - re-exported: tests build tokenizers and models from one place
    BOS_TOKEN,
    DEFAULT_WORDS,
    EOS_TOKEN,
    MAX_POSITIONS,
    _words_from,
    build_clip_tokenizer,
    clip_config,
    clip_text_config,
)


def build_clip_model(seed: int = 0, tokenizer: CLIPTokenizer | None = None, **config_kwargs):
    """A tiny `CLIPModel` (text 32 wide, vision 40 wide, projection 24 by default; keywords of `clip_config`)."""
    from transformers import CLIPModel

    tokenizer = tokenizer or build_clip_tokenizer()
    torch.manual_seed(seed)
    return CLIPModel(clip_config(tokenizer, **config_kwargs)).eval()


def build_clip_text_model(seed: int = 0, tokenizer: CLIPTokenizer | None = None, **config_kwargs):
    from transformers import CLIPTextModel

    tokenizer = tokenizer or build_clip_tokenizer()
    torch.manual_seed(seed)
    return CLIPTextModel(clip_text_config(tokenizer, **config_kwargs)).eval()


def build_clip_text_model_with_projection(
    seed: int = 0, tokenizer: CLIPTokenizer | None = None, **config_kwargs
):
    from transformers import CLIPTextModelWithProjection

    tokenizer = tokenizer or build_clip_tokenizer()
    torch.manual_seed(seed)
    return CLIPTextModelWithProjection(clip_text_config(tokenizer, **config_kwargs)).eval()


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
    config = dict(block_out_channels=(4, 8), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), norm_num_groups=2)
    return UNet2DConditionModel(**{**config, **overrides}, cross_attention_dim=cross_attention_dim)


def build_sd_components(seed: int = 0, text_hidden_size: int = 32) -> dict:
    """Components for `StableDiffusionPipeline` (SD 1.x layout) with a tiny UNet, VAE and CLIP text encoder."""
    tokenizer = build_clip_tokenizer()
    unet = build_unet(seed, cross_attention_dim=text_hidden_size, attention_head_dim=2)
    return {
        "unet": unet,
        "scheduler": build_scheduler(),
        "vae": build_vae(seed),
        "text_encoder": build_clip_text_model(seed, tokenizer, text_hidden_size=text_hidden_size),
        "tokenizer": tokenizer,
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
    }


def build_sdxl_components(seed: int = 0, text_hidden_size: int = 32, text_hidden_size_2: int = 32,
                          projection_dim: int = 32) -> dict:
    """Components for `StableDiffusionXLPipeline`: two CLIP text encoders and a text_time UNet.

    The UNet's `cross_attention_dim` is the sum of the two encoders' widths and its add-embedding
    input is `6 * addition_time_embed_dim + projection_dim` of `text_encoder_2`, as in SDXL.
    """
    tokenizer = build_clip_tokenizer()
    time_dim = 8
    unet = build_unet(
        seed,
        cross_attention_dim=text_hidden_size + text_hidden_size_2,
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
        "text_encoder": build_clip_text_model(seed, tokenizer, text_hidden_size=text_hidden_size),
        "text_encoder_2": build_clip_text_model_with_projection(
            seed + 1, tokenizer, text_hidden_size=text_hidden_size_2, projection_dim=projection_dim
        ),
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer,
        "image_encoder": None,
        "feature_extractor": None,
    }


def build_sd3_pipeline(seed: int = 0, projection_dim: int = 32):
    """A tiny `StableDiffusion3Pipeline` with two CLIP encoders and no T5 (`text_encoder_3=None`: the
    pipeline zero-fills T5's part of the joint attention input)."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    tok = build_clip_tokenizer()
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(sample_size=32, patch_size=1, in_channels=4, num_layers=1, attention_head_dim=8,
                                        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=64,
                                        pooled_projection_dim=2 * projection_dim, out_channels=4)
    vae = AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                        latent_channels=4, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5035)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, tokenizer=tok, tokenizer_2=tok,
        text_encoder=build_clip_text_model_with_projection(seed, tok, projection_dim=projection_dim),
        text_encoder_2=build_clip_text_model_with_projection(seed + 1, tok, projection_dim=projection_dim),
        text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_flux_pipeline(seed: int = 0, words: Iterable[str] = ()):
    """A tiny `FluxPipeline`: a CLIP text encoder, a word-level T5 tokenizer and a tiny T5 encoder."""
    import transformers
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    tok = build_clip_tokenizer()
    vocab = sorted(set("a street with no cars dog hat without car cat".split()) | set(words))
    t5_tok = transformers.T5Tokenizer(vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
                                      + [(w, -1.0) for w in vocab] + [("▁" + w, -1.0) for w in vocab], extra_ids=0)
    torch.manual_seed(seed)
    t5 = transformers.T5EncoderModel(transformers.T5Config(vocab_size=len(t5_tok), d_model=32, d_kv=8, d_ff=37,
                                                           num_layers=1, num_heads=4))
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
    vae = AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                        latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5035)
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                        text_encoder=build_clip_text_model(seed, tok), tokenizer=tok, text_encoder_2=t5,
                        tokenizer_2=t5_tok, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --------------------------------------------------------------------------------------------------
# CLIPSeg and the BLIP VQA judge


def build_clipseg(seed: int = 0, tokenizer: CLIPTokenizer | None = None, projection_dim: int = 24,
                  text_hidden_size: int = 32):
    """A tiny `CLIPSegForImageSegmentation` (text 32 wide, vision 40 wide, 3 vision layers): its text tower
    has the shapes of `build_clip_model`'s with the same keywords, as CLIPSeg is built on a CLIP."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    tokenizer = tokenizer or build_clip_tokenizer()
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "max_position_embeddings", "bos_token_id", "eos_token_id", "pad_token_id")
    full = clip_text_config(tokenizer, text_hidden_size=text_hidden_size, projection_dim=projection_dim).to_dict()
    text = {k: full[k] for k in keys}
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


def build_non_clip_text_model(kind: str, seed: int = 0, hidden_size: int = 32):
    """A tiny text encoder that is not CLIP (`bert`: BertModel, `t5`: T5EncoderModel), random init: what a
    user may pass where a CLIP text tower belongs."""
    from transformers import BertConfig, BertModel, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    if kind == "bert":
        return BertModel(BertConfig(vocab_size=128, hidden_size=hidden_size, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=37)).eval()
    if kind == "t5":
        return T5EncoderModel(T5Config(vocab_size=128, d_model=hidden_size, d_kv=8, d_ff=37, num_layers=1,
                                       num_heads=2)).eval()
    raise ValueError(f"kind must be bert or t5, got {kind!r}")


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
