"""Convert a benchmark's own download into a manifest.

    python -m modeling_affectverse.data.convert meld --root /data/MELD.Raw --output data/manifests/meld.jsonl
    python -m modeling_affectverse.data.convert iemocap --root /data/IEMOCAP_full_release \\
        --output data/manifests/iemocap.jsonl --probe

Writes the manifest (media paths relative to its folder), `<output>.summary.json` beside it, and prints the
summary: rows per split, and skipped rows per reason with the first offenders.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys

from modeling_affectverse.data.converters import CONVERTERS
from modeling_affectverse.data.manifest import write_manifest


def build_parser() -> argparse.ArgumentParser:
    """The command line this script takes (the README's commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(CONVERTERS), help="which benchmark's layout --root holds")
    parser.add_argument("--root", required=True, help="the dataset folder as downloaded")
    parser.add_argument("--output", required=True, help="manifest path (.jsonl)")
    parser.add_argument("--probe", action="store_true", help="open every media file's header with av (slower)")
    parser.add_argument("--absolute", action="store_true", help="keep absolute media paths in the manifest")
    parser.add_argument("--language", default=None, help="subtitle column of the transcription CSV (MER, OV-MERD+)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    if not os.path.exists(args.root):
        parser.error(f"--root {args.root}: no such folder")
    if not os.path.isdir(args.root):
        parser.error(f"--root {args.root} is a file; give the folder the {args.dataset} download was unpacked into")
    convert = CONVERTERS[args.dataset]
    kwargs = {"probe": args.probe}
    if args.language is not None:
        if "language" not in inspect.signature(convert).parameters:
            parser.error(f"--language does not apply to {args.dataset}")
        kwargs["language"] = args.language
    rows, summary = convert(args.root, **kwargs)
    if not rows:  # a wrong --root (or layout) reads as an empty dataset: never a silent empty manifest
        print(summary, file=sys.stderr)
        print(
            f"error: no usable rows under {args.root} for {args.dataset}; is --root the dataset's top folder? "
            "(the expected layout is in modeling_affectverse/data/converters.py and docs/data.md)",
            file=sys.stderr,
        )
        return 1
    count = write_manifest(rows, args.output, relative=not args.absolute)
    with open(f"{args.output}.summary.json", "w", encoding="utf-8") as handle:
        json.dump(summary.to_dict(), handle, indent=2, ensure_ascii=False)
    print(summary)
    print(f"wrote {count} rows to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
