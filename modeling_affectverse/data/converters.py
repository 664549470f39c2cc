"""Converters from the nine MER-UniBench benchmarks' own downloads to the manifest schema (`manifest.py`).

Each converter takes the dataset root as distributed (annotation files plus media folders), returns the manifest
rows and a `ConversionSummary`, and never crashes on a bad row: rows whose media are missing or unreadable, whose
label is empty, NaN or outside the dataset's label set are skipped and listed in the summary (counts plus the first
offenders). Media paths in the rows are absolute; `write_manifest` makes them relative to the manifest's folder.
Annotation files are read as UTF-8; a file that is not valid UTF-8 is decoded as Windows-1252 (the encoding of
older CSV exports) and noted in the summary; if that fails too, `AnnotationError` names the file.

The CLI is `python -m modeling_affectverse.data.convert` (one command for all nine).
"""

from __future__ import annotations

import ast
import csv
import io
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field

from modeling_affectverse.media_affectverse import MediaError, probe_media
from modeling_affectverse.processing_affectverse import MER_LABELS as PROMPT_MER_LABELS

MER_LABELS = list(PROMPT_MER_LABELS)
MELD_LABELS = ["anger", "joy", "sadness", "neutral", "disgust", "fear", "surprise"]
IEMOCAP_LABELS = ["happy", "sad", "neutral", "angry"]
# IEMOCAP four-class protocol: excited is merged into happy; every other code is outside the label set
IEMOCAP_CODES = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".flv")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg")
MAX_OFFENDERS = 5


class AnnotationError(ValueError):
    """An annotation file is missing, undecodable or lacks a required column. The message names the file."""


@dataclass
class ConversionSummary:
    """What a conversion wrote and what it skipped, and why.

    Attributes:
        rows: rows written per split.
        skipped: rows skipped per reason (`missing_media`, `unreadable_media`, `invalid_label`, `unknown_label`,
            `excluded_class`).
        offenders: the first `MAX_OFFENDERS` skipped rows per reason, as "id: detail".
        notes: file-level remarks (an encoding fallback, a missing optional file).
    """

    dataset: str
    rows: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    offenders: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str, sample_id: str, detail: str) -> None:
        self.skipped[reason] += 1
        listed = self.offenders.setdefault(reason, [])
        if len(listed) < MAX_OFFENDERS:
            listed.append(f"{sample_id}: {detail}")

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "rows": dict(sorted(self.rows.items())),
            "total": sum(self.rows.values()),
            "skipped": dict(sorted(self.skipped.items())),
            "offenders": self.offenders,
            "notes": self.notes,
        }

    def __str__(self) -> str:
        lines = [f"{self.dataset}: {sum(self.rows.values())} rows " + str(dict(sorted(self.rows.items())))]
        for reason, count in sorted(self.skipped.items()):
            lines.append(f"  skipped {count} ({reason}), first: " + "; ".join(self.offenders.get(reason, [])))
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def read_csv(path: str, summary: ConversionSummary, required: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of strings (no type guessing: ids like `0001` keep their zeros)."""
    if not os.path.isfile(path):
        raise AnnotationError(f"{path}: annotation file not found")
    raw = open(path, "rb").read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = raw.decode("cp1252")
        except UnicodeDecodeError as err:
            raise AnnotationError(f"{path}: neither UTF-8 nor Windows-1252 text ({err})") from err
        summary.notes.append(f"{path}: not valid UTF-8, decoded as Windows-1252")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    columns = set(rows[0]) if rows else set()
    missing = [c for c in required if c not in columns]
    if rows and missing:
        raise AnnotationError(f"{path}: missing column(s) {missing}; found {sorted(columns)}")
    return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in rows]


def read_text(path: str, summary: ConversionSummary) -> str:
    """A text annotation file, UTF-8 with the same Windows-1252 fallback as `read_csv`."""
    raw = open(path, "rb").read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        summary.notes.append(f"{path}: not valid UTF-8, decoded as Windows-1252")
        return raw.decode("cp1252", errors="strict")


class MediaIndex:
    """Finds a sample's media file by folder and stem, whatever its extension; checks it can be read.

    Folder listings are read once (not one glob per row). With `probe=True` every file's header is opened with `av`
    (slower, catches corrupt files); otherwise only existence and a non-zero size are checked.
    """

    def __init__(self, root: str, probe: bool = False):
        self.root = os.path.abspath(root)
        self.probe = probe
        self._listings: dict[str, dict[str, str]] = {}

    def _listing(self, folder: str) -> dict[str, str]:
        if folder not in self._listings:
            found: dict[str, str] = {}
            path = os.path.join(self.root, folder)
            names = sorted(os.listdir(path)) if os.path.isdir(path) else []
            for name in names:
                stem, ext = os.path.splitext(name)
                if ext.lower() in VIDEO_EXTENSIONS + AUDIO_EXTENSIONS:
                    found.setdefault(stem, name)  # sorted: a.avi wins over a.mp4, deterministically
            self._listings[folder] = found
        return self._listings[folder]

    def find(self, folders: list[str] | str, stem: str) -> str | None:
        """Absolute path of `<folder>/<stem>.<any media extension>` in the first folder that has it, else None."""
        for folder in [folders] if isinstance(folders, str) else folders:
            name = self._listing(folder).get(stem)
            if name is not None:
                return os.path.join(self.root, folder, name)
        return None

    def problem(self, path: str | None) -> tuple[str, str] | None:
        """(reason, detail) when `path` cannot be used, else None."""
        if path is None or not os.path.isfile(path):
            return "missing_media", f"not found: {path}"
        if os.path.getsize(path) == 0:
            return "unreadable_media", f"empty file: {path}"
        if self.probe:
            try:
                probe_media(path)
            except MediaError as err:
                return "unreadable_media", str(err)
        return None


def _emit(rows: list[dict], summary: ConversionSummary, base: dict, **fields) -> None:
    """Append one manifest row (the dataset-wide `base` fields plus this sample's) and count it in its split."""
    rows.append({**base, **{k: v for k, v in fields.items() if v is not None}})
    summary.rows[fields["split"]] += 1


def _keep(summary: ConversionSummary, media: MediaIndex, sample_id: str, paths: list[str | None]) -> bool:
    """Whether every media file a row names is usable; records the first problem otherwise."""
    for path in paths:
        problem = media.problem(path)
        if problem is not None:
            summary.skip(problem[0], sample_id, problem[1])
            return False
    return True


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _subtitles(root: str, candidates: list[str], language: str, summary: ConversionSummary) -> dict[str, str]:
    """name -> subtitle from the first transcription CSV found (columns `name` and `language`)."""
    for name in candidates:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            rows = read_csv(path, summary, required=("name", language))
            return {row["name"]: row[language] for row in rows}
    summary.notes.append(f"no transcription file ({' / '.join(candidates)}) under {root}: subtitles left empty")
    return {}


def _convert_mer(
    root: str,
    dataset: str,
    splits: dict[str, tuple[str, list[str]]],
    subtitle_files: list[str],
    language: str,
    probe: bool,
) -> tuple[list[dict], ConversionSummary]:
    summary = ConversionSummary(dataset)
    media = MediaIndex(root, probe)
    subtitles = _subtitles(root, subtitle_files, language, summary)
    base = {"dataset": dataset, "task": "emotion", "label_set": MER_LABELS}
    rows = []
    for split, (label_file, video_dirs) in splits.items():
        path = os.path.join(root, label_file)
        if not os.path.isfile(path):
            summary.notes.append(f"{path}: not found, split '{split}' skipped")
            continue
        for record in read_csv(path, summary, required=("name", "discrete")):
            name, label = record["name"], record["discrete"].lower()
            if label not in MER_LABELS:
                summary.skip("unknown_label" if label else "invalid_label", name, f"label {record['discrete']!r}")
                continue
            video = media.find(video_dirs, name)
            if _keep(summary, media, name, [video]):
                subtitle = subtitles.get(name, "")
                _emit(
                    rows, summary, base, id=name, split=split, video=video, audio=video, subtitle=subtitle, label=label
                )
    return rows, summary


def convert_mer2023(root: str, language: str = "english", probe: bool = False) -> tuple[list[dict], ConversionSummary]:
    """MER2023 (the MER-MULTI track).

    Source layout (as distributed): `train-label.csv`, `test1-label.csv`, `test2-label.csv`, `test3-label.csv`
    with columns `name, discrete, valence`, and the videos in `train/`, `test1/`, `test2/`, `test3/` named
    `<name>.<ext>`. Subtitles from `label-transcription.csv` or `transcription.csv` (`name, chinese, english`).
    Splits: `train`; `test` = test1 (the 411-clip MER-UniBench set); `test2`, `test3` when their label files exist.
    Labels: the six MER classes as written in `discrete`; audio is the video's own track.
    """
    splits = {
        "train": ("train-label.csv", ["train"]),
        "test": ("test1-label.csv", ["test1"]),
        "test2": ("test2-label.csv", ["test2"]),
        "test3": ("test3-label.csv", ["test3"]),
    }
    return _convert_mer(root, "MER2023", splits, ["label-transcription.csv", "transcription.csv"], language, probe)


def convert_mer2024(root: str, language: str = "english", probe: bool = False) -> tuple[list[dict], ConversionSummary]:
    """MER2024 (the MER-SEMI track).

    Source layout: `label-disdim.csv` (`name, discrete, valence`) for the labelled videos in `video-labeled/`;
    subtitles in `label-transcription.csv` (`name, chinese, english`). The test labels released after the challenge
    are read from `test-label.csv` (same columns) with videos in `video-test/` or `video-unlabeled/` — these two
    names are this project's convention, not the release's; rename to match.
    """
    splits = {
        "train": ("label-disdim.csv", ["video-labeled"]),
        "test": ("test-label.csv", ["video-test", "video-unlabeled"]),
    }
    return _convert_mer(root, "MER2024", splits, ["label-transcription.csv", "transcription.csv"], language, probe)


MELD_SPLITS = {
    "train": ("train_sent_emo.csv", ["train_splits", "train"]),
    "validation": ("dev_sent_emo.csv", ["dev_splits_complete", "dev_splits", "dev"]),
    "test": ("test_sent_emo.csv", ["output_repeated_splits_test", "test_splits", "test"]),
}


def convert_meld(root: str, probe: bool = False) -> tuple[list[dict], ConversionSummary]:
    """MELD.

    Source layout (MELD.Raw): `train_sent_emo.csv`, `dev_sent_emo.csv`, `test_sent_emo.csv` with columns
    `Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, ...`; clips `dia{D}_utt{U}.mp4` in
    `train_splits/`, `dev_splits_complete/`, `output_repeated_splits_test/` (or `train/`, `dev/`, `test/`).
    Splits train / validation / test (2610). Labels: the seven `Emotion` classes, lower-cased. Subtitle: `Utterance`.
    """
    summary = ConversionSummary("MELD")
    media = MediaIndex(root, probe)
    base = {"dataset": "MELD", "task": "emotion", "label_set": MELD_LABELS}
    rows = []
    for split, (label_file, video_dirs) in MELD_SPLITS.items():
        path = os.path.join(root, label_file)
        if not os.path.isfile(path):
            summary.notes.append(f"{path}: not found, split '{split}' skipped")
            continue
        for record in read_csv(path, summary, required=("Utterance", "Emotion", "Dialogue_ID", "Utterance_ID")):
            name = f"dia{record['Dialogue_ID']}_utt{record['Utterance_ID']}"
            label = record["Emotion"].lower()
            if label not in MELD_LABELS:
                summary.skip("unknown_label" if label else "invalid_label", name, f"label {record['Emotion']!r}")
                continue
            video = media.find(video_dirs, name)
            sample_id = f"{split}/{name}"  # dialogue numbers restart in every split
            if _keep(summary, media, sample_id, [video]):
                subtitle = record["Utterance"]
                _emit(
                    rows,
                    summary,
                    base,
                    id=sample_id,
                    split=split,
                    video=video,
                    audio=video,
                    subtitle=subtitle,
                    label=label,
                )
    return rows, summary


_IEMOCAP_LINE = re.compile(r"^\[(\d+(?:\.\d+)?) - (\d+(?:\.\d+)?)\]\s+(\S+)\s+(\S+)\s+\[")
_IEMOCAP_TEXT = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s*(.*)$")


def convert_iemocap(root: str, test_session: int = 5, probe: bool = False) -> tuple[list[dict], ConversionSummary]:
    """IEMOCAP, four classes (happy with excited merged in, sad, neutral, angry).

    Source layout (IEMOCAP_full_release): `Session{1..5}/dialog/EmoEvaluation/<dialog>.txt` whose utterance lines
    read `[start - end]<TAB>utterance<TAB>code<TAB>[V, A, D]`; transcripts in `Session{n}/dialog/transcriptions/
    <dialog>.txt` (`utterance [start-end]: text`); utterance audio `Session{n}/sentences/wav/<dialog>/<utt>.wav`;
    the dialogue video `Session{n}/dialog/avi/DivX/<dialog>.avi`, of which each row takes its `segment`.
    Splits: session `test_session` (5) is `test` (1241 utterances), the others `train`. Codes other than
    neu / hap / exc / sad / ang are skipped as `excluded_class` (expected, not an error).
    """
    summary = ConversionSummary("IEMOCAP")
    media = MediaIndex(root, probe)
    base = {"dataset": "IEMOCAP", "task": "emotion", "label_set": IEMOCAP_LABELS}
    rows = []
    for session in range(1, 6):
        dialog_root = os.path.join(root, f"Session{session}", "dialog")
        labels_dir = os.path.join(dialog_root, "EmoEvaluation")
        if not os.path.isdir(labels_dir):
            summary.notes.append(f"{labels_dir}: not found, session {session} skipped")
            continue
        split = "test" if session == test_session else "train"
        for label_file in sorted(f for f in os.listdir(labels_dir) if f.endswith(".txt")):
            dialog = label_file[: -len(".txt")]
            transcript_path = os.path.join(dialog_root, "transcriptions", label_file)
            texts = {}
            if os.path.isfile(transcript_path):
                for line in read_text(transcript_path, summary).splitlines():
                    match = _IEMOCAP_TEXT.match(line.strip())
                    if match:
                        texts[match.group(1)] = match.group(2).strip()
            video = media.find(os.path.join(f"Session{session}", "dialog", "avi", "DivX"), dialog)
            for line in read_text(os.path.join(labels_dir, label_file), summary).splitlines():
                match = _IEMOCAP_LINE.match(line.strip())
                if not match:
                    continue
                start, end, utterance, code = float(match[1]), float(match[2]), match[3], match[4]
                if code not in IEMOCAP_CODES:
                    summary.skip("excluded_class", utterance, f"code {code!r} outside the four classes")
                    continue
                audio = media.find(os.path.join(f"Session{session}", "sentences", "wav", dialog), utterance)
                if _keep(summary, media, utterance, [video, audio]):
                    label, subtitle = IEMOCAP_CODES[code], texts.get(utterance, "")
                    _emit(
                        rows,
                        summary,
                        base,
                        id=utterance,
                        split=split,
                        video=video,
                        audio=audio,
                        subtitle=subtitle,
                        label=label,
                        segment=[start, end],
                    )
    return rows, summary


MMSA_SPLITS = {"train": "train", "valid": "validation", "validation": "validation", "test": "test"}


def convert_mmsa(root: str, dataset: str, probe: bool = False) -> tuple[list[dict], ConversionSummary]:
    """CMU-MOSI, CMU-MOSEI, CH-SIMS and CH-SIMS v2 in the widely used MMSA `label.csv` layout.

    Source layout: `label.csv` with columns `video_id, clip_id, text, label, annotation, mode` (SIMS adds
    `label_T, label_A, label_V`); clips in `Raw/<video_id>/<clip_id>.mp4`. `mode` train / valid / test maps to
    train / validation / test. The numeric `label` is kept as is (MOSI/MOSEI in [-3, 3], SIMS in [-1, 1]); the SIMS
    per-modality labels go to `modality_labels` {text, audio, video}. Ids are read as text, so `0001` stays `0001`.
    """
    summary = ConversionSummary(dataset)
    media = MediaIndex(root, probe)
    base = {"dataset": dataset, "task": "sentiment"}
    rows = []
    records = read_csv(
        os.path.join(root, "label.csv"), summary, required=("video_id", "clip_id", "text", "label", "mode")
    )
    for record in records:
        sample_id = f"{record['video_id']}/{record['clip_id']}"
        split = MMSA_SPLITS.get(record["mode"].lower())
        label = _number(record["label"])
        if split is None:
            summary.skip("invalid_split", sample_id, f"mode {record['mode']!r}")
            continue
        if label is None:
            summary.skip("invalid_label", sample_id, f"label {record['label']!r} is not a finite number")
            continue
        modality = None
        if "label_T" in record:
            modality = {key: _number(record.get(f"label_{key[0].upper()}", "")) for key in ("text", "audio", "video")}
        video = media.find(os.path.join("Raw", record["video_id"]), record["clip_id"])
        if _keep(summary, media, sample_id, [video]):
            _emit(
                rows,
                summary,
                base,
                id=sample_id,
                split=split,
                video=video,
                audio=video,
                subtitle=record["text"],
                label=label,
                modality_labels=modality,
            )
    return rows, summary


def parse_openset(text: str) -> list[str]:
    """An open-vocabulary label cell (`['happy', 'relaxed']`, `happy, relaxed` or `happy，relaxed`) as a word list."""
    text = text.strip()
    if text.startswith("["):
        try:
            items = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            items = text.strip("[]").split(",")
    else:
        items = re.split(r"[,，;；]", text)
    words: list[str] = []
    for item in items:
        word = str(item).strip().strip("'\"").strip().lower()
        if word and word not in words:
            words.append(word)
    return words


def convert_ovmerd_plus(
    root: str, label_file: str = "label.csv", language: str = "english", probe: bool = False
) -> tuple[list[dict], ConversionSummary]:
    """OV-MERD+ (open vocabulary, test only).

    Source layout: `label.csv` (override with `label_file`) with columns `name, openset` where `openset` is a list
    of emotion words (`['happy', 'relaxed']` or comma-separated); videos `video/<name>.<ext>`; subtitles from
    `subtitle.csv` or `label-transcription.csv` (`name, english`). Every row is split `test`.
    """
    summary = ConversionSummary("OV-MERD+")
    media = MediaIndex(root, probe)
    base = {"dataset": "OV-MERD+", "task": "open_vocabulary"}
    subtitles = _subtitles(root, ["subtitle.csv", "label-transcription.csv"], language, summary)
    rows = []
    for record in read_csv(os.path.join(root, label_file), summary, required=("name", "openset")):
        name, words = record["name"], parse_openset(record["openset"])
        if not words:
            summary.skip("invalid_label", name, f"openset {record['openset']!r} holds no word")
            continue
        video = media.find("video", name)
        if _keep(summary, media, name, [video]):
            subtitle = subtitles.get(name, "")
            _emit(rows, summary, base, id=name, split="test", video=video, audio=video, subtitle=subtitle, label=words)
    return rows, summary


CONVERTERS = {
    "mer2023": convert_mer2023,
    "mer2024": convert_mer2024,
    "meld": convert_meld,
    "iemocap": convert_iemocap,
    "mosi": lambda root, probe=False: convert_mmsa(root, "CMU-MOSI", probe),
    "mosei": lambda root, probe=False: convert_mmsa(root, "CMU-MOSEI", probe),
    "sims": lambda root, probe=False: convert_mmsa(root, "CH-SIMS", probe),
    "simsv2": lambda root, probe=False: convert_mmsa(root, "CH-SIMS v2", probe),
    "ovmerd_plus": convert_ovmerd_plus,
}

__all__ = [
    "CONVERTERS",
    "AnnotationError",
    "ConversionSummary",
    "MediaIndex",
    "convert_iemocap",
    "convert_meld",
    "convert_mer2023",
    "convert_mer2024",
    "convert_mmsa",
    "convert_ovmerd_plus",
    "parse_openset",
    "read_csv",
]
