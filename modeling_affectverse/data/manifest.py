"""The manifest: one JSONL schema for every benchmark, loaded with `datasets`.

One line per sample (full description in `docs/data.md`):

    id, dataset, split, task ("emotion" | "sentiment" | "open_vocabulary"),
    video, audio (paths or null), subtitle (string), label, optional label_set,
    optional segment ([start, end] seconds into the video file), optional modality_labels (SIMS).

The label's type follows the task: a string (emotion), a number (sentiment) or a list of strings (open
vocabulary). Media paths are relative to the manifest's folder unless absolute; `audio` equal to `video` means the
video's own audio track. Every row is checked line by line before `datasets` sees the file, so an error names the
file, the line and the field.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator

import datasets

from modeling_affectverse.processing_affectverse import TASKS

FIELDS = ("id", "dataset", "split", "task", "video", "audio", "subtitle", "label", "label_set")
OPTIONAL_FIELDS = ("segment", "modality_labels", "reasoning", "unlabeled")  # reasoning: the reasoning format's target;
# unlabeled: true marks a row without a label (the world model's imagination loss only: `sft.py --unlabeled_manifest`)
MODALITY_LABEL_KEYS = ("text", "audio", "video")


class ManifestError(ValueError):
    """A manifest row breaks the schema. The message names the file, the line and the field."""


def _label_feature(task: str):
    if task == "emotion":
        return datasets.Value("string")
    if task == "sentiment":
        return datasets.Value("float64")
    return datasets.List(datasets.Value("string"))


def manifest_features(task: str) -> datasets.Features:
    """The `datasets` features of a manifest of one task (the label column's type depends on the task)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: expected one of {TASKS}")
    string = datasets.Value("string")
    return datasets.Features(
        {
            "id": string,
            "dataset": string,
            "split": string,
            "task": string,
            "video": string,
            "audio": string,
            "subtitle": string,
            "label": _label_feature(task),
            "label_set": datasets.List(string),
            "segment": datasets.List(datasets.Value("float64")),
            "modality_labels": {key: datasets.Value("float64") for key in MODALITY_LABEL_KEYS},
            "reasoning": string,
            "unlabeled": datasets.Value("bool"),
        }
    )


def _finite_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_row(row: dict, where: str = "row") -> dict:
    """Check one manifest row and return it with every optional field present (None when absent).

    Raises:
        ManifestError: naming `where` (e.g. `file.jsonl:12`) and the offending field.
    """
    if not isinstance(row, dict):
        raise ManifestError(f"{where}: a manifest row must be a JSON object, got {type(row).__name__}")
    unknown = set(row) - set(FIELDS) - set(OPTIONAL_FIELDS)
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {sorted(unknown)}; the schema has {FIELDS + OPTIONAL_FIELDS}")
    for name in ("id", "dataset", "split", "task"):
        if not isinstance(row.get(name), str) or not row[name].strip():
            raise ManifestError(f"{where}: field '{name}' must be a non-empty string, got {row.get(name)!r}")
    task = row["task"]
    if task not in TASKS:
        raise ManifestError(f"{where}: field 'task' is {task!r}; expected one of {TASKS}")
    out = {name: row.get(name) for name in FIELDS + OPTIONAL_FIELDS}
    out["subtitle"] = "" if out["subtitle"] is None else out["subtitle"]
    for name in ("video", "audio", "subtitle", "reasoning"):
        if out[name] is not None and not isinstance(out[name], str):
            raise ManifestError(f"{where}: field '{name}' must be a string or null, got {out[name]!r}")
    if not out["video"] and not out["audio"] and not out["subtitle"].strip():
        raise ManifestError(f"{where}: the row has no video, no audio and an empty subtitle: nothing to recognise")
    out["video"] = out["video"] or None
    out["audio"] = out["audio"] or None

    label = row.get("label")
    if out["unlabeled"] is not None and not isinstance(out["unlabeled"], bool):
        raise ManifestError(f"{where}: field 'unlabeled' must be true, false or absent, got {out['unlabeled']!r}")
    if out["unlabeled"]:
        if label is not None:
            raise ManifestError(f"{where}: a row marked 'unlabeled' must not carry a label, got {label!r}")
    elif task == "emotion" and not (isinstance(label, str) and label.strip()):
        raise ManifestError(f"{where}: field 'label' of an emotion row must be a non-empty string, got {label!r}")
    elif task == "sentiment" and not _finite_number(label):
        raise ManifestError(f"{where}: field 'label' of a sentiment row must be a finite number, got {label!r}")
    elif task == "open_vocabulary" and not (
        isinstance(label, list) and label and all(isinstance(x, str) and x.strip() for x in label)
    ):
        raise ManifestError(f"{where}: field 'label' of an open_vocabulary row must be a non-empty list of strings")
    label_set = out["label_set"]
    if task == "emotion" and label_set is None:
        raise ManifestError(f"{where}: field 'label_set' is required for an emotion row (the prompt lists it)")
    if label_set is not None:
        if not (isinstance(label_set, list) and label_set and all(isinstance(x, str) for x in label_set)):
            raise ManifestError(f"{where}: field 'label_set' must be a non-empty list of strings, got {label_set!r}")
        if len(set(label_set)) != len(label_set):
            raise ManifestError(f"{where}: field 'label_set' repeats a label: {label_set}")
        if task == "emotion" and not out["unlabeled"] and label not in label_set:
            raise ManifestError(f"{where}: field 'label' {label!r} is not in the row's label_set {label_set}")
    segment = out["segment"]
    if segment is not None and not (
        isinstance(segment, list)
        and len(segment) == 2
        and all(map(_finite_number, segment))
        and 0 <= segment[0] < segment[1]
    ):
        raise ManifestError(f"{where}: field 'segment' must be [start, end] seconds with 0 <= start < end")
    if segment is not None and not out["video"]:
        raise ManifestError(f"{where}: field 'segment' indexes into the video file, but the row has no video")
    labels = out["modality_labels"]
    if labels is not None and not (
        isinstance(labels, dict)
        and set(labels) <= set(MODALITY_LABEL_KEYS)
        and all(v is None or _finite_number(v) for v in labels.values())
    ):
        raise ManifestError(f"{where}: field 'modality_labels' must map {MODALITY_LABEL_KEYS} to numbers")
    return out


def iter_manifest(path: str | os.PathLike) -> Iterator[dict]:
    """Yield the validated rows of a JSONL manifest, one line at a time (never the whole file in memory)."""
    path = os.fspath(path)
    seen: dict[tuple[str, str], int] = {}  # (dataset, id) -> line
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                # NaN / Infinity are not JSON; Python's parser accepts them unless told otherwise
                row = json.loads(line, parse_constant=lambda name, where=where: _reject_constant(name, where))
            except json.JSONDecodeError as err:
                raise ManifestError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from err
            row = validate_row(row, where)
            key = (row["dataset"], row["id"])
            if key in seen:  # predictions, resumes and per-sample seeds are keyed by id
                raise ManifestError(f"{where}: field 'id' {row['id']!r} repeats line {seen[key]} (dataset {key[0]!r})")
            seen[key] = number
            yield row


def _reject_constant(name: str, where: str):
    raise ManifestError(f"{where}: {name} is not a valid value (labels must be finite numbers)")


def write_manifest(rows: Iterable[dict], path: str | os.PathLike, relative: bool = False) -> int:
    """Validate and write rows as JSONL (UTF-8, fields in schema order, optional fields only when set).

    With `relative=True`, absolute media paths are rewritten relative to the manifest's folder, so the manifest
    and the media can move together. Returns the number of rows written; identical rows give identical bytes.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for number, row in enumerate(rows, start=1):
            clean = validate_row(row, f"{path} (row {number})")
            clean = {k: v for k, v in clean.items() if k in FIELDS or v is not None}
            for name in ("video", "audio"):
                if relative and clean[name] is not None and os.path.isabs(clean[name]):
                    clean[name] = os.path.relpath(clean[name], folder)
            handle.write(json.dumps(clean, ensure_ascii=False, allow_nan=False) + "\n")
            count += 1
    return count


def _resolve(path: str | None, root: str) -> str | None:
    return None if path is None else os.path.normpath(os.path.join(root, path))


def load_manifest(
    paths: str | os.PathLike | list[str | os.PathLike],
    media_root: str | os.PathLike | None = None,
    streaming: bool = False,
    cache_dir: str | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """Load one or more JSONL manifests of one task as a `datasets.Dataset` (or `IterableDataset` when streaming).

    Every file is validated line by line first. Relative media paths are made absolute against `media_root`, or
    each manifest's own folder. Files of different tasks cannot share one dataset (their label columns have
    different types): load them separately.
    """
    paths = [os.fspath(p) for p in ([paths] if isinstance(paths, str | os.PathLike) else paths)]
    if not paths:
        raise ValueError("load_manifest needs at least one manifest path")
    tasks: dict[str, str] = {}
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"manifest not found: {path}")
        for row in iter_manifest(path):
            tasks.setdefault(row["task"], path)
    if len(tasks) > 1:
        raise ManifestError(
            f"manifests mix tasks {sorted(tasks)} (e.g. {sorted(tasks.values())}); load each task separately"
        )
    if not tasks:
        raise ManifestError(f"manifest(s) {paths} hold no rows")
    features = manifest_features(next(iter(tasks)))
    parts = []
    for path in paths:
        root = os.path.abspath(os.fspath(media_root) if media_root is not None else os.path.dirname(path))
        part = datasets.load_dataset(
            "json",
            data_files=os.path.abspath(path),
            features=features,
            split="train",
            streaming=streaming,
            cache_dir=cache_dir,
        )
        part = part.map(lambda row, root=root: {key: _resolve(row[key], root) for key in ("video", "audio")})
        parts.append(part)
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


__all__ = [
    "FIELDS",
    "OPTIONAL_FIELDS",
    "TASKS",
    "ManifestError",
    "iter_manifest",
    "load_manifest",
    "manifest_features",
    "validate_row",
    "write_manifest",
]
