"""Tiny CLIP models in the papers' source layouts, written from the source code, for conversion tests.

`OpenAICLIP` follows OpenAI's `clip/model.py` (ViT): sequence-first attention blocks holding their causal
mask, QuickGELU, `x @ text_projection` at the argmax (eos) token, `visual.proj` after `ln_post` on the
class token. `OpenCLIP` follows open_clip's `model.py` / `transformer.py`: batch-first attention, the
mask passed through `forward`, GELU unless `quick_gelu`, the same pooling. Neither uses transformers,
so a converted folder that gives their embeddings is checked against an independent forward.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, act, batch_first: bool, attn_mask=None):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=batch_first)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, width * 4)), ("gelu", act()),
                                              ("c_proj", nn.Linear(width * 4, width))]))
        self.ln_2 = nn.LayerNorm(width)
        self.attn_mask = attn_mask  # OpenAI keeps the mask on the block (not a parameter or buffer)

    def forward(self, x, attn_mask=None):
        mask = attn_mask if attn_mask is not None else self.attn_mask
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, act, batch_first, attn_mask=None):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads, act, batch_first, attn_mask)
                                        for _ in range(layers)])

    def forward(self, x, attn_mask=None):
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, image_size, patch, width, layers, heads, embed_dim, act, batch_first):
        super().__init__()
        self.batch_first = batch_first
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width))
        self.positional_embedding = nn.Parameter(torch.randn((image_size // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, act, batch_first)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, embed_dim))

    def forward(self, x):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.ln_pre(x)
        if self.batch_first:
            x = self.transformer(x)
        else:
            x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)  # NLD -> LND -> NLD
        return self.ln_post(x[:, 0, :]) @ self.proj


def causal_mask(n: int) -> torch.Tensor:
    return torch.empty(n, n).fill_(float("-inf")).triu_(1)


class _CLIP(nn.Module):
    batch_first = False

    def __init__(self, vocab_size, embed_dim=48, context_length=77, text_width=128, text_layers=2, text_heads=2,
                 vision_width=192, vision_layers=2, vision_heads=3, image_size=32, patch=8, act=QuickGELU):
        super().__init__()
        self.context_length = context_length
        self.visual = VisionTransformer(image_size, patch, vision_width, vision_layers, vision_heads, embed_dim, act,
                                        self.batch_first)
        self.transformer = Transformer(text_width, text_layers, text_heads, act, self.batch_first,
                                       None if self.batch_first else causal_mask(context_length))
        self.token_embedding = nn.Embedding(vocab_size, text_width)
        self.positional_embedding = nn.Parameter(torch.randn(context_length, text_width))
        self.ln_final = nn.LayerNorm(text_width)
        self.text_projection = nn.Parameter(torch.randn(text_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * 2.6592)

    def encode_image(self, image):
        return self.visual(image)

    def _encode(self, x):
        """The text transformer on (batch, tokens, width): the two subclasses differ only here (OpenAI's layout
        is sequence-first with its mask built in, open_clip's batch-first with the mask passed per call)."""
        raise NotImplementedError("OpenAICLIP and OpenCLIP define _encode")

    def encode_text(self, text):
        x = self.token_embedding(text) + self.positional_embedding
        x = self.ln_final(self._encode(x))
        # the eot embedding: the eot token is the highest id in each sequence
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection

    def forward(self, image, text):
        return self.encode_image(image), self.encode_text(text)


class OpenAICLIP(_CLIP):
    batch_first = False

    def __init__(self, vocab_size, **kw):
        super().__init__(vocab_size, **kw)
        # what OpenAI's TorchScript archives carry beside the weights
        self.register_buffer("input_resolution", torch.tensor(kw.get("image_size", 32)))
        ctx = self.context_length
        del self.context_length
        self.register_buffer("context_length", torch.tensor(ctx))
        self.register_buffer("vocab_size", torch.tensor(vocab_size))

    def _encode(self, x):
        return self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)


class OpenCLIP(_CLIP):
    batch_first = True

    def __init__(self, vocab_size, quick_gelu=False, **kw):
        super().__init__(vocab_size, act=QuickGELU if quick_gelu else nn.GELU, **kw)
        self.register_buffer("attn_mask", causal_mask(self.context_length), persistent=False)

    def _encode(self, x):
        return self.transformer(x, attn_mask=self.attn_mask)


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """Every weight random (LayerNorms too, so a swapped gain or bias shows), at scales that keep activations sane."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                continue
            if ("ln" in name or "norm" in name) and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                scale = 0.3 if p.ndim == 1 else p.shape[-1] ** -0.5 if p.ndim == 2 else 0.05
                p.copy_(scale * torch.randn(p.shape, generator=g))
    return model.eval()
