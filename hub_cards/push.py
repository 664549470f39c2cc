"""Upload an exported folder to the Hub: `create_repo` + `upload_folder`, or `--dry-run` to list what would go.

python -m hub_cards.push --folder hub/affectverse --repo-id org/affectverse --dry-run
python -m hub_cards.push --folder hub/affectverse --repo-id org/affectverse --private   # needs a login / token
"""

from __future__ import annotations

import argparse
import os
import sys


def listing(folder: str) -> list[tuple[str, int]]:
    """(relative path, bytes) of every file upload_folder would send (hidden files and folders skipped)."""
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                path = os.path.join(root, name)
                files.append((os.path.relpath(path, folder), os.path.getsize(path)))
    return files


def build_parser() -> argparse.ArgumentParser:
    """The command line this script takes (the README's commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", required=True)
    parser.add_argument("--repo-id", required=True)
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="list the files and sizes; upload nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.folder, "config.json")):
        parser.error(f"{args.folder} has no config.json: export it first (python -m hub_cards.export)")
    files = listing(args.folder)
    for path, size in files:
        print(f"{size:>14,}  {path}")
    print(f"{sum(s for _, s in files):>14,}  total, {len(files)} files -> {args.repo_id}")
    if args.dry_run:
        print("dry run: nothing uploaded")
        return 0
    from huggingface_hub import create_repo, upload_folder

    create_repo(args.repo_id, private=args.private, exist_ok=True)
    upload_folder(repo_id=args.repo_id, folder_path=args.folder, ignore_patterns=[".*"])
    print(f"uploaded to https://huggingface.co/{args.repo_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
