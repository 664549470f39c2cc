"""Each converter on fixture files written in its benchmark's distributed layout."""

from __future__ import annotations

import json
import os

import pytest

from modeling_affectverse.data.convert import main as convert_main
from modeling_affectverse.data.converters import (
    IEMOCAP_LABELS,
    MELD_LABELS,
    MER_LABELS,
    AnnotationError,
    convert_iemocap,
    convert_meld,
    convert_mer2023,
    convert_mer2024,
    convert_mmsa,
    convert_ovmerd_plus,
    parse_openset,
)
from modeling_affectverse.data.manifest import iter_manifest, load_manifest, write_manifest
from tests.media_fixtures import write_constant_video


def write(path, text: str, encoding: str = "utf-8") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding=encoding, newline="") as handle:
        handle.write(text)


def media(root, *relative: str) -> None:
    """Placeholder media files (converters check existence and size; `--probe` opens them)."""
    for rel in relative:
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(b"\0" * 32)


def by_id(rows):
    return {row["id"]: row for row in rows}


def test_mer2023(tmp_path):
    root = str(tmp_path)
    write(
        f"{root}/train-label.csv",
        "name,discrete,valence\nsample_01,happy,2.0\nsample_02,Sad,-1.5\nsample_03,worried,-1\n",
    )
    write(
        f"{root}/test1-label.csv", "name,discrete,valence\nsample_10,angry,-2\nsample_11,bored,0\nsample_12,neutral,0\n"
    )
    write(f"{root}/label-transcription.csv", "name,chinese,english\nsample_01,你好,Hello there\n")
    media(root, "train/sample_01.mp4", "train/sample_02.avi", "test1/sample_10.mp4", "test1/sample_12.mp4")
    rows, summary = convert_mer2023(root)
    assert len(rows) == 4 and dict(summary.rows) == {"train": 2, "test": 2}
    rows = by_id(rows)
    assert rows["sample_02"]["label"] == "sad" and rows["sample_02"]["video"].endswith("train/sample_02.avi")
    assert rows["sample_01"]["subtitle"] == "Hello there" and rows["sample_01"]["label_set"] == MER_LABELS
    assert rows["sample_01"]["audio"] == rows["sample_01"]["video"]  # the video's own audio track
    assert summary.skipped == {"missing_media": 1, "unknown_label": 1}
    assert summary.offenders["missing_media"][0].startswith("sample_03: not found")
    assert "bored" in summary.offenders["unknown_label"][0]
    assert any("test2-label.csv: not found" in note for note in summary.notes)


def test_mer2024(tmp_path):
    root = str(tmp_path)
    write(f"{root}/label-disdim.csv", "name,discrete,valence\nsamplenew_1,surprise,1\nsamplenew_2,happy,3\n")
    write(f"{root}/test-label.csv", "name,discrete,valence\nsamplenew_9,worried,-1\n")
    media(root, "video-labeled/samplenew_1.mp4", "video-test/samplenew_9.mp4")
    rows, summary = convert_mer2024(root)
    assert [(r["id"], r["split"], r["label"]) for r in rows] == [
        ("samplenew_1", "train", "surprise"),
        ("samplenew_9", "test", "worried"),
    ]
    assert summary.skipped == {"missing_media": 1}
    assert any("no transcription file" in note for note in summary.notes)


MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"


def test_meld_with_windows_1252_subtitles(tmp_path):
    root = str(tmp_path)
    write(
        f"{root}/train_sent_emo.csv",
        MELD_HEADER + '1,"Oh my God, he’s lost it.",Phoebe,surprise,negative,0,0,4,7,x,y\n'
        "2,Yeah.,Joey,joy,positive,0,1,4,7,x,y\n",
        encoding="cp1252",
    )  # MELD-style non-UTF-8 apostrophe
    write(f"{root}/dev_sent_emo.csv", MELD_HEADER + "1,Hi.,Ross,neutral,neutral,0,0,1,1,x,y\n")
    write(
        f"{root}/test_sent_emo.csv",
        MELD_HEADER + "1,No!,Rachel,anger,negative,0,0,1,1,x,y\n2,What?,Monica,disgust,negative,3,2,1,1,x,y\n",
    )
    media(
        root,
        "train_splits/dia0_utt0.mp4",
        "train_splits/dia0_utt1.mp4",
        "dev_splits_complete/dia0_utt0.mp4",
        "output_repeated_splits_test/dia0_utt0.mp4",
    )
    rows, summary = convert_meld(root)
    assert dict(summary.rows) == {"train": 2, "validation": 1, "test": 1}
    rows = by_id(rows)
    assert rows["train/dia0_utt0"]["subtitle"] == "Oh my God, he’s lost it."  # decoded, not mangled
    assert rows["train/dia0_utt1"]["label"] == "joy" and rows["test/dia0_utt0"]["label_set"] == MELD_LABELS
    assert rows["validation/dia0_utt0"]["video"].endswith("dev_splits_complete/dia0_utt0.mp4")
    assert summary.skipped == {"missing_media": 1} and "test/dia3_utt2" in summary.offenders["missing_media"][0]
    assert any("train_sent_emo.csv: not valid UTF-8, decoded as Windows-1252" in n for n in summary.notes)


def iemocap_session(root, session: int, dialog: str, lines: list[tuple[str, str, float, float, str]]) -> None:
    base = f"{root}/Session{session}/dialog"
    labels = "% header\n\n" + "".join(
        f"[{start:.4f} - {end:.4f}]\t{utt}\t{code}\t[2.5000, 2.5000, 2.5000]\nC-E1:\t{code};\t()\n\n"
        for utt, code, start, end, _ in lines
    )
    write(f"{base}/EmoEvaluation/{dialog}.txt", labels)
    write(
        f"{base}/transcriptions/{dialog}.txt", "".join(f"{u} [{s:08.4f}-{e:08.4f}]: {t}\n" for u, _, s, e, t in lines)
    )
    media(root, f"Session{session}/dialog/avi/DivX/{dialog}.avi")


def test_iemocap_four_classes_session_five_is_test(tmp_path):
    root = str(tmp_path)
    iemocap_session(
        root,
        1,
        "Ses01F_impro01",
        [
            ("Ses01F_impro01_F000", "neu", 6.29, 8.23, "Excuse me."),
            ("Ses01F_impro01_M001", "exc", 10.0, 11.5, "Great!"),
            ("Ses01F_impro01_F002", "fru", 12.0, 13.0, "Ugh."),
            ("Ses01F_impro01_M003", "hap", 14.0, 15.0, "Nice."),
        ],
    )
    iemocap_session(
        root,
        5,
        "Ses05M_script01_1",
        [
            ("Ses05M_script01_1_F000", "ang", 1.0, 2.0, "Stop it."),
            ("Ses05M_script01_1_M001", "sad", 3.0, 4.5, "I know."),
            ("Ses05M_script01_1_F002", "xxx", 5.0, 6.0, "Hm."),
        ],
    )
    media(
        root,
        *(f"Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_{u}.wav" for u in ("F000", "M001", "F002")),
        "Session5/sentences/wav/Ses05M_script01_1/Ses05M_script01_1_F000.wav",
        "Session5/sentences/wav/Ses05M_script01_1/Ses05M_script01_1_M001.wav",
    )
    rows, summary = convert_iemocap(root)
    rows = by_id(rows)
    assert {k: (r["split"], r["label"]) for k, r in rows.items()} == {
        "Ses01F_impro01_F000": ("train", "neutral"),
        "Ses01F_impro01_M001": ("train", "happy"),  # excited merged into happy
        "Ses05M_script01_1_F000": ("test", "angry"),
        "Ses05M_script01_1_M001": ("test", "sad"),
    }
    sample = rows["Ses05M_script01_1_M001"]
    assert sample["segment"] == [3.0, 4.5] and sample["subtitle"] == "I know." and sample["label_set"] == IEMOCAP_LABELS
    assert sample["video"].endswith("Session5/dialog/avi/DivX/Ses05M_script01_1.avi")
    assert sample["audio"].endswith("Ses05M_script01_1/Ses05M_script01_1_M001.wav")
    assert summary.skipped == {"excluded_class": 2, "missing_media": 1}  # fru, xxx; hap without its wav
    assert any("session 2 skipped" in note for note in summary.notes)


MMSA_HEADER = "video_id,clip_id,text,label,annotation,mode\n"


@pytest.mark.parametrize("dataset", ["CMU-MOSI", "CMU-MOSEI"])
def test_mosi_mosei_numeric_labels_preserved(tmp_path, dataset):
    root = str(tmp_path)
    write(
        f"{root}/label.csv",
        MMSA_HEADER + "03bSnISJMiM,1,a lot of sad parts,-2.4,Negative,train\n"
        "03bSnISJMiM,2,it was fine,0.0,Neutral,valid\n03bSnISJMiM,3,great,2.8,Positive,test\n"
        "0h-zjBukYpk,1,what,nan,Neutral,test\n0h-zjBukYpk,2,missing clip,1.2,Positive,test\n",
    )
    media(root, *(f"Raw/03bSnISJMiM/{i}.mp4" for i in (1, 2, 3)), "Raw/0h-zjBukYpk/1.mp4")
    rows, summary = convert_mmsa(root, dataset)
    assert [(r["id"], r["split"], r["label"]) for r in rows] == [
        ("03bSnISJMiM/1", "train", -2.4),
        ("03bSnISJMiM/2", "validation", 0.0),
        ("03bSnISJMiM/3", "test", 2.8),
    ]
    assert all(r["task"] == "sentiment" and r["dataset"] == dataset for r in rows)
    assert summary.skipped == {"invalid_label": 1, "missing_media": 1}
    assert "0h-zjBukYpk/1: label 'nan'" in summary.offenders["invalid_label"][0]


@pytest.mark.parametrize("dataset", ["CH-SIMS", "CH-SIMS v2"])
def test_sims_modality_labels_and_zero_padded_ids(tmp_path, dataset):
    root = str(tmp_path)
    header = "video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode\n"
    write(
        f"{root}/label.csv",
        header + "video_0001,0001,我很好,0.6,0.8,0.4,0.2,Positive,train\n"
        "video_0001,0002,不行,-1.0,-1.0,-0.8,-0.6,Negative,test\nvideo_0002,0001,嗯,0.0,0.0,0.0,0.0,Neutral,test\n",
    )
    media(root, "Raw/video_0001/0001.mp4", "Raw/video_0001/0002.mp4")
    rows, summary = convert_mmsa(root, dataset)
    rows = by_id(rows)
    assert set(rows) == {"video_0001/0001", "video_0001/0002"}
    assert rows["video_0001/0001"]["modality_labels"] == {"text": 0.8, "audio": 0.4, "video": 0.2}
    assert rows["video_0001/0002"]["label"] == -1.0 and rows["video_0001/0002"]["subtitle"] == "不行"
    assert summary.skipped == {"missing_media": 1}


def test_ovmerd_plus(tmp_path):
    root = str(tmp_path)
    write(
        f"{root}/label.csv",
        "name,openset\nsample_1,\"['happy', 'Relaxed']\"\nsample_2,\"worried, nervous，sad\"\n"
        "sample_3,[]\nsample_4,angry\n",
    )
    write(f"{root}/subtitle.csv", "name,chinese,english\nsample_1,好,Fine\n")
    media(root, "video/sample_1.mp4", "video/sample_2.mp4", "video/sample_3.mp4")
    rows, summary = convert_ovmerd_plus(root)
    assert [(r["id"], r["split"], r["label"]) for r in rows] == [
        ("sample_1", "test", ["happy", "relaxed"]),
        ("sample_2", "test", ["worried", "nervous", "sad"]),
    ]
    assert rows[0]["subtitle"] == "Fine" and rows[0]["task"] == "open_vocabulary"
    assert summary.skipped == {"invalid_label": 1, "missing_media": 1}


def test_parse_openset_forms():
    assert parse_openset("['a', 'b', 'a']") == ["a", "b"]
    assert parse_openset(" Happy ;sad ") == ["happy", "sad"]
    assert parse_openset("") == []


def test_probe_reports_unreadable_media(tmp_path):
    root = str(tmp_path)
    write(f"{root}/label.csv", MMSA_HEADER + "v,1,ok,1.0,Positive,test\nv,2,broken,1.0,Positive,test\n")
    os.makedirs(f"{root}/Raw/v")
    write_constant_video(f"{root}/Raw/v/1.mp4", 0.5)
    media(root, "Raw/v/2.mp4")  # 32 zero bytes: exists, not media
    assert len(convert_mmsa(root, "CMU-MOSI")[0]) == 2  # without probing only existence is checked
    rows, summary = convert_mmsa(root, "CMU-MOSI", probe=True)
    assert [r["id"] for r in rows] == ["v/1"]
    assert (
        summary.skipped == {"unreadable_media": 1}
        and "2.mp4: cannot be read" in summary.offenders["unreadable_media"][0]
    )


def test_missing_annotation_and_missing_column_name_the_file(tmp_path):
    with pytest.raises(AnnotationError, match="label.csv: annotation file not found"):
        convert_mmsa(str(tmp_path), "CMU-MOSI")
    write(f"{tmp_path}/label.csv", "video_id,clip_id,text\nv,1,x\n")
    with pytest.raises(AnnotationError, match=r"label.csv: missing column\(s\) \['label', 'mode'\]"):
        convert_mmsa(str(tmp_path), "CMU-MOSI")


def test_cli_writes_a_loadable_manifest_with_relative_paths(tmp_path, capsys):
    root = tmp_path / "MOSI"
    write(f"{root}/label.csv", MMSA_HEADER + "v,1,fine,1.5,Positive,train\nv,2,gone,0.5,Positive,test\n")
    media(str(root), "Raw/v/1.mp4")
    output = tmp_path / "manifests" / "mosi.jsonl"
    assert convert_main(["mosi", "--root", str(root), "--output", str(output)]) == 0
    assert "skipped 1 (missing_media)" in capsys.readouterr().out
    line = json.loads(output.read_text().splitlines()[0])
    assert line["video"] == os.path.join("..", "MOSI", "Raw", "v", "1.mp4")
    summary = json.loads((tmp_path / "manifests" / "mosi.jsonl.summary.json").read_text())
    assert summary["rows"] == {"train": 1} and summary["skipped"] == {"missing_media": 1}
    dataset = load_manifest(str(output), cache_dir=str(tmp_path / "cache"))
    assert dataset[0]["video"] == str(root / "Raw" / "v" / "1.mp4") and dataset[0]["label"] == 1.5
    # a manifest written from the rows reads back the same rows
    rows = list(iter_manifest(str(output)))
    write_manifest(rows, str(tmp_path / "again.jsonl"))
    assert (tmp_path / "again.jsonl").read_bytes() == output.read_bytes()
    assert rows[0]["label_set"] is None and rows[0]["task"] == "sentiment"
