"""`negenc convert`: a released OpenAI-`clip` or open_clip checkpoint -> an encoder checkpoint folder.

    negenc convert --from openai NegationCLIP_ViT-B-32.pt --out runs/negationclip --tokenizer clip-tokenizer/
    negenc convert --from open_clip negbench_clip.pt --out runs/negbench --tokenizer clip-tokenizer/

The folder has the layout `negenc train` writes (CLIPModel, text_encoder/, text_encoder_with_projection/,
tokenizer/, model card), so `negenc eval --model`, `negenc t2i --encoder` and `negenc seg --encoder`
read it. The architecture comes from the weights' shapes; the tokenizer does not: pass --tokenizer with
a folder holding OpenAI's CLIP tokenizer (vocab.json, merges.txt), e.g. openai/clip-vit-base-patch32's.
OpenAI's models and those fine-tuned from them (NegationCLIP, NegBench) use QuickGELU, the default;
pass --act gelu for open_clip models trained from scratch (LAION ViT-H, bigG).
"""

from __future__ import annotations

import argparse


def convert_command_parser(subparsers) -> argparse.ArgumentParser:
    from ..checkpoint.convert import ACTIVATIONS, SOURCES

    p = subparsers.add_parser("convert", help="turn an OpenAI-clip / open_clip checkpoint into an encoder folder",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC", help="the checkpoint file (.pt/.pth/.bin pickle, TorchScript archive, "
                   "or .safetensors)")
    p.add_argument("--from", dest="source", required=True, choices=SOURCES, help="the layout SRC was saved in")
    p.add_argument("--out", required=True, help="the encoder checkpoint folder to write")
    p.add_argument("--tokenizer", default=None, help="folder with the CLIPTokenizer files the model was trained "
                   "with (needed for the standard 49408-token vocabulary, which is not shipped)")
    p.add_argument("--act", default=None, choices=ACTIVATIONS,
                   help="the MLP activation, which no weight records (default: quick_gelu, OpenAI's)")
    p.add_argument("--text-heads", type=int, default=None, help="text attention heads (default: width / 64)")
    p.add_argument("--vision-heads", type=int, default=None,
                   help="image attention heads (default: width / 64; open_clip's H, g, bigG, e: 16)")
    p.add_argument("--allow-unsafe-pickle", action="store_true",
                   help="if SRC holds more than plain weights, unpickle it fully (runs code the file names)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=convert_command)
    return p


def convert_command(args: argparse.Namespace) -> int:
    from ..checkpoint.convert import convert_checkpoint

    res = convert_checkpoint(args.src, args.out, source=args.source, tokenizer=args.tokenizer, activation=args.act,
                             text_heads=args.text_heads, vision_heads=args.vision_heads,
                             allow_unsafe_pickle=args.allow_unsafe_pickle, overwrite=args.overwrite)
    a = res.architecture
    print(f"converted {args.src} ({args.source}, read as {res.read_as}) -> {res.out}")
    print(f"  text: width {a.text_width}, {a.text_layers} layers, {a.text_heads} heads, {a.context_length} positions, "
          f"vocabulary {a.vocab_size}; image: width {a.vision_width}, {a.vision_layers} layers, {a.vision_heads} heads, "
          f"patch {a.patch_size}, {a.image_size}px; projection {a.embed_dim}")
    print(f"  activation {res.activation}; tokenizer {res.tokenizer}")
    return 0
