"""`negenc export`: an encoder folder in the single-file formats ComfyUI and AUTOMATIC1111 load.

    negenc export runs/negclip/model --format comfyui --out clip_l_negation.safetensors
    negenc export runs/negclip/model --format sd-checkpoint --into v1-5-pruned-emaonly.safetensors \\
        --out v1-5-negation.safetensors
    negenc export runs/negclip-l/model --format sd-checkpoint --into sd_xl_base_1.0.safetensors \\
        --encoder-2 runs/negclip-bigg/model --out sdxl-negation.safetensors

comfyui: one text encoder file (transformers key names, with text_projection.weight) for ComfyUI's
CLIPLoader / DualCLIPLoader; only the sizes ComfyUI builds are written (CLIP-L, CLIP-H, CLIP-G).
sd-checkpoint: a copy of an original-layout SD 1.x or SDXL single-file model with the encoder in its text
encoder slot (SDXL: the slot its width fits; --encoder-2 for the second, bigG slot), for AUTOMATIC1111,
ComfyUI's checkpoint loader and diffusers' from_single_file. --into is only read; the result is written
to a new file, atomically.
"""

from __future__ import annotations

import argparse

from ..errors import InputError


def export_command_parser(subparsers) -> argparse.ArgumentParser:
    from ..checkpoint.single_file import DTYPES, FORMATS

    p = subparsers.add_parser("export", help="write an encoder folder as a ComfyUI text encoder file or into an "
                              "SD 1.x / SDXL single-file checkpoint", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", metavar="ENCODER_DIR", help="encoder checkpoint folder (negenc train's <out>/model, "
                   "or negenc convert's output)")
    p.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    p.add_argument("--out", required=True, help="the .safetensors file to write (never --into)")
    p.add_argument("--into", default=None, help="sd-checkpoint: the original-layout SD 1.x / SDXL .safetensors "
                   "(or .ckpt) to copy the encoder into")
    p.add_argument("--encoder-2", default=None, help="sd-checkpoint, SDXL: encoder folder for the second (OpenCLIP "
                   "bigG) slot")
    p.add_argument("--dtype", default="fp32", choices=list(DTYPES),
                   help="comfyui: the stored precision (sd-checkpoint keeps the checkpoint's)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=export_command)
    return p


def export_command(args: argparse.Namespace) -> int:
    from ..checkpoint import single_file

    if args.format == "comfyui":
        if args.into or args.encoder_2:
            raise InputError("--into and --encoder-2 are for --format sd-checkpoint")
        out, slot = single_file.export_comfyui(args.folder, args.out, dtype=args.dtype, overwrite=args.overwrite)
        print(f"wrote {out}: a {slot.describe()} text encoder for ComfyUI")
        print(f"  {slot.use}")
        return 0
    if not args.into:
        raise InputError("--format sd-checkpoint needs --into MODEL.safetensors (the checkpoint to copy)")
    res = single_file.merge_into_checkpoint(args.folder, args.into, args.out, folder_2=args.encoder_2,
                                            overwrite=args.overwrite)
    print(f"wrote {res.out}: {args.into} ({'SD 1.x' if res.kind == 'sd1' else 'SDXL'}) with "
          + "; ".join(res.slots) + " replaced")
    print("  load it as any checkpoint: AUTOMATIC1111 models/Stable-diffusion/, ComfyUI models/checkpoints/, or "
          "diffusers' from_single_file")
    return 0
