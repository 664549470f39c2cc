"""What each metric module ships beside its script, so that a module folder works alone: `evaluate.load` of the
folder copied anywhere, or published as a Hub metric, with no AffectVerse package to import.

    python -m metrics.vendor           # write the copies
    python -m metrics.vendor --check   # list the copies that differ from their sources (exit 1 if any)

The copies are the sources byte for byte (`tests/metrics` fails when one is stale); evaluate copies a script's
`from .x import y` files with it, so each script imports every file it ships.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = {
    "metric_base.py": os.path.join(ROOT, "metrics", "metric_base.py"),
    "emotion_lexicon.py": os.path.join(ROOT, "modeling_affectverse", "emotion_lexicon.py"),
    "emotion_wheels.py": os.path.join(ROOT, "modeling_affectverse", "emotion_wheels.py"),
}
SHIPPED = {
    "emotion_classification": ("metric_base.py", "emotion_lexicon.py"),
    "emotion_hit_rate": ("metric_base.py", "emotion_lexicon.py", "emotion_wheels.py"),
    "open_vocabulary_emotion": ("metric_base.py", "emotion_lexicon.py", "emotion_wheels.py"),
    "sentiment_polarity": ("metric_base.py",),
}


def stale() -> list[str]:
    """The shipped copies that are missing or differ from their sources (paths relative to the checkout)."""
    out = []
    for module, files in SHIPPED.items():
        for name in files:
            copy = os.path.join(ROOT, "metrics", module, name)
            with open(SOURCES[name], "rb") as source:
                wanted = source.read()
            if not os.path.isfile(copy) or open(copy, "rb").read() != wanted:
                out.append(os.path.relpath(copy, ROOT))
    return out


def write() -> list[str]:
    """Copy every source into the modules that ship it; returns the copies written."""
    written = stale()
    for path in written:
        shutil.copyfile(SOURCES[os.path.basename(path)], os.path.join(ROOT, path))
    return written


def build_parser() -> argparse.ArgumentParser:
    """The command line this script takes (the README's commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="list stale copies, write nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paths = stale() if args.check else write()
    for path in paths:
        print(("stale: " if args.check else "wrote: ") + path)
    return 1 if args.check and paths else 0


if __name__ == "__main__":
    sys.exit(main())
