"""`negenc publish DIR --repo-id ORG/NAME [--dry-run]`: model card + one-commit upload."""

from __future__ import annotations

import argparse


def publish_command_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("publish", help="write the model card and upload an encoder folder to the Hub")
    p.add_argument("folder", help="encoder checkpoint folder (what negenc train writes as <out>/model)")
    p.add_argument("--repo-id", required=True, help="ORG/NAME on the Hub")
    p.add_argument("--dry-run", action="store_true",
                   help="change nothing and upload nothing: list the files and print the card that would be uploaded")
    p.add_argument("--allow-pickle", action="store_true", help="allow .bin/.pt/.pth/.ckpt files")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--base-model", default=None, help="Hub id of the base model for the card metadata "
                   "(default: read from training_config.json)")
    p.add_argument("--dataset", action="append", default=None, help="dataset id for the card metadata (repeatable)")
    p.add_argument("--license", default=None,
                   help="Hub license id for the card (e.g. mit, apache-2.0, other); default: the base model's where "
                        "known (OpenAI CLIP and the testbed world: mit; a local base's own card), else other with a "
                        "note")
    p.set_defaults(func=publish_command)
    return p


def publish_command(args: argparse.Namespace) -> int:
    from ..checkpoint.card import check_license
    from ..checkpoint.publish import publish

    res = publish(args.folder, args.repo_id, dry_run=args.dry_run, allow_pickle=args.allow_pickle,
                  private=args.private or None, base_model=args.base_model, datasets=args.dataset,
                  license=check_license(args.license) if args.license is not None else None)
    verb = "would upload" if res.dry_run else "uploaded"
    print(f"{verb} {len(res.files)} files to {res.repo_id}" + (f" ({res.url})" if res.url else ""))
    for f in res.files:
        print(f"  {f}")
    card = "generated model card" if res.card_generated else "the folder's own README.md (hand-written, kept as is)"
    print(f"README.md: {card}")
    if res.dry_run:
        print("--- README.md ---")
        print(res.card)
    return 0
