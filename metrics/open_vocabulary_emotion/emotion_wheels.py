"""Emotion wheels as the metric modules use them: which wheel groups an answer's emotion words fall into.

Three sources, one interface (`names()`, `groups(answer, wheel)`):

- the built-in wheels (`emotion_lexicon.WHEELS`, written for this project): matched through the lemmatiser, with
  a single-word fallback for phrases ("a bit nervous" -> "nervous");
- a CSV of `wheel,group,word` rows (`wheel_file=`): matched **exactly** by default (lower-cased, stripped; no
  lemmatiser, no single-word fallback), because a benchmark's own word list must decide, not our lemmatiser;
- MER-UniBench's wheel folder (`wheel_folder=`): `format.csv`, `synonym.xlsx` and `wheel1.xlsx` .. `wheel5.xlsx`,
  applied by that benchmark's rule (below).

In exact mode an answer is split only on commas and quotes (a list's brackets dropped), as MER-UniBench splits.

MER-UniBench's rule for one word w and one wheel (its `func_backward_case3`, written from its description):
w is looked up in the written forms of `format.csv` (a form maps to the entries whose `format` lists it, and an
entry's name maps to itself); each entry found is expanded to the wheel words it is a synonym of
(`synonym.xlsx`, merged over its runs; a wheel word maps to itself); of all those wheel words, sorted, the first
that the wheel holds gives the group (its level-1 ancestor by default). A word found nowhere counts for nothing.
"""

from __future__ import annotations

import csv
import os
import re

from .emotion_lexicon import WHEELS, load_wheels, read_wheel_rows, wheel_groups

LEVELS = ("level1", "level2")


def split_answer(answer: str | list[str]) -> list[str]:
    """MER-UniBench's answer splitting: brackets at the ends dropped, split on quotes and commas, each item
    lower-cased and stripped, empty items dropped. A list is taken item by item."""
    if isinstance(answer, list):
        items = [str(item) for item in answer]
    else:
        text = str(answer).strip()
        text = text[1:] if text.startswith("[") else text
        text = text[:-1] if text.endswith("]") else text
        items = re.split(r"['\",]", text)
    return [item.strip().lower() for item in items if item.strip()]


class LexiconWheels:
    """The built-in wheels (or CSV wheels in `match="lemma"` mode): lemmatised look-up with a single-word fallback."""

    def __init__(self, wheels: dict[str, dict[str, set[str]]] | None = None):
        self.wheels = WHEELS if wheels is None else wheels

    def names(self) -> list[str]:
        return sorted(self.wheels)

    def groups(self, answer: str | list[str], wheel: str) -> set[str]:
        return wheel_groups(answer, self.wheels[wheel])


class ExactWheels:
    """CSV wheels matched exactly: a word belongs to every group that lists it verbatim (lower-cased)."""

    def __init__(self, path: str | os.PathLike):
        self.index: dict[str, dict[str, set[str]]] = {}  # wheel -> word -> groups
        for wheel, group, word in read_wheel_rows(path):
            self.index.setdefault(wheel, {}).setdefault(word.lower(), set()).add(group)

    def names(self) -> list[str]:
        return sorted(self.index)

    def groups(self, answer: str | list[str], wheel: str) -> set[str]:
        words = self.index[wheel]
        return {group for word in split_answer(answer) for group in words.get(word, ())}


def _sheet_rows(path: str) -> list[dict]:
    """An .xlsx file's first sheet as dicts keyed by its header row (openpyxl; values as read)."""
    from openpyxl import load_workbook

    if not os.path.isfile(path):
        raise FileNotFoundError(f"MER-UniBench wheel folder: {path} is missing")
    book = load_workbook(path, read_only=True, data_only=True)
    try:
        rows = list(book.worksheets[0].iter_rows(values_only=True))
    finally:
        book.close()
    if not rows:
        raise ValueError(f"{path}: empty sheet")
    header = [str(cell).strip() if cell is not None else "" for cell in rows[0]]
    return [dict(zip(header, row, strict=False)) for row in rows[1:]]


def _text(value) -> str:
    return "" if value is None else str(value).strip().lower()


class MerUniBenchWheels:
    """MER-UniBench's wheel folder applied by its rule (module docstring). `level`: `level1` (the benchmark's
    main setting) or `level2`."""

    def __init__(self, folder: str | os.PathLike, level: str = "level1"):
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        folder = os.fspath(folder)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"MER-UniBench wheel folder not found: {folder}")
        self.forms = self._read_forms(os.path.join(folder, "format.csv"))
        self.synonyms = self._read_synonyms(os.path.join(folder, "synonym.xlsx"))
        self.maps: dict[str, dict[str, str]] = {}
        for index in range(1, 6):
            path = os.path.join(folder, f"wheel{index}.xlsx")
            self.maps[f"wheel{index}"] = self._wheel_map(_sheet_rows(path), level, path)

    @staticmethod
    def _read_forms(path: str) -> dict[str, list[str]]:
        """Written form -> the `format.csv` entries it is a form of (an entry's name is a form of itself)."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"MER-UniBench wheel folder: {path} is missing")
        forms: dict[str, list[str]] = {}
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if not {"name", "format"} <= set(reader.fieldnames or []):
                raise ValueError(f"{path}: expected the columns name and format, got {reader.fieldnames}")
            for row in reader:
                name = _text(row["name"])
                for form in split_answer(row["format"] or ""):
                    forms.setdefault(form, []).append(name)
                forms.setdefault(name, []).append(name)
        return forms

    @staticmethod
    def _read_synonyms(path: str) -> dict[str, set[str]]:
        """Word -> the wheel words it is a synonym of, merged over every `word_runK` / `synonym_runK` pair."""
        rows = _sheet_rows(path)
        runs = sorted({key[len("word_") :] for key in rows[0] if key.startswith("word_run")}) if rows else []
        if not runs:
            raise ValueError(f"{path}: no word_run<K> / synonym_run<K> columns")
        synonyms: dict[str, set[str]] = {}
        for run in runs:
            for row in rows:
                wheel_word = _text(row.get(f"word_{run}"))
                if not wheel_word:
                    continue
                synonyms.setdefault(wheel_word, set()).add(wheel_word)
                for synonym in split_answer(_text(row.get(f"synonym_{run}"))):
                    synonyms.setdefault(synonym, set()).add(wheel_word)
        return synonyms

    @staticmethod
    def _wheel_map(rows: list[dict], level: str, path: str) -> dict[str, str]:
        """Every word of a wheel -> its group at `level` (a blank cell repeats the one above)."""
        if rows and not {"level1", "level2", "level3"} <= set(rows[0]):
            raise ValueError(f"{path}: expected the columns level1, level2, level3")
        tree: dict[str, dict[str, list[str]]] = {}
        current = ["", "", ""]
        for row in rows:
            for i, key in enumerate(("level1", "level2", "level3")):
                if _text(row.get(key)):
                    current[i] = _text(row.get(key))
            tree.setdefault(current[0], {}).setdefault(current[1], []).append(current[2])
        mapping: dict[str, str] = {}
        for top, middles in tree.items():
            mapping[top] = top if level == "level1" else sorted(middles)[0]
            for middle, leaves in middles.items():
                mapping[middle] = top if level == "level1" else middle
                for leaf in leaves:
                    mapping[leaf] = top if level == "level1" else middle
        return mapping

    def names(self) -> list[str]:
        return sorted(self.maps)

    def group_of(self, word: str, wheel: str) -> str | None:
        """The benchmark's group for one (lower-cased) word, or None."""
        wheel_map = self.maps[wheel]
        candidates = sorted(w for entry in self.forms.get(word, ()) for w in self.synonyms.get(entry, ()))
        return next((wheel_map[w] for w in candidates if w in wheel_map), None)

    def groups(self, answer: str | list[str], wheel: str) -> set[str]:
        found = (self.group_of(word, wheel) for word in split_answer(answer))
        return {group for group in found if group is not None}


def resolve_wheels(wheel_file=None, wheel_folder=None, wheel_match: str = "exact", level: str = "level1"):
    """The wheels a metric module scores with: MER-UniBench's folder, a CSV (exact or lemmatised), or built-in."""
    if wheel_file is not None and wheel_folder is not None:
        raise ValueError("pass either wheel_file (a CSV) or wheel_folder (MER-UniBench's folder), not both")
    if wheel_folder is not None:
        return MerUniBenchWheels(wheel_folder, level)
    if wheel_file is not None:
        if wheel_match not in ("exact", "lemma"):
            raise ValueError(f"wheel_match must be 'exact' or 'lemma', got {wheel_match!r}")
        return ExactWheels(wheel_file) if wheel_match == "exact" else LexiconWheels(load_wheels(wheel_file))
    return LexiconWheels()


__all__ = ["ExactWheels", "LexiconWheels", "MerUniBenchWheels", "resolve_wheels", "split_answer"]
