"""The collator: labels on the answer only (either padding side), seeded draws, modality dropout, bad rows."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from modeling_affectverse.data.collator import AffectVerseCollator, DataError, MediaOptions, answer_text
from modeling_affectverse.data.manifest import load_manifest


@pytest.fixture(scope="module")
def rows(demo_manifest, tmp_path_factory):
    dataset = load_manifest(demo_manifest, cache_dir=str(tmp_path_factory.mktemp("cache")))
    return [dataset[i] for i in range(len(dataset))]


@pytest.mark.parametrize("side", ["left", "right"])
def test_labels_cover_exactly_the_answer(processor, rows, side):
    tokenizer = processor.tokenizer
    original = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        batch = AffectVerseCollator.for_training(processor, modality_dropout=0.0)(rows[:3])
    finally:
        tokenizer.padding_side = original
    assert (batch["attention_mask"][:, 0 if side == "left" else -1] == 0).any()  # really padded on that side
    for i, row in enumerate(rows[:3]):
        labelled = batch["labels"][i] != -100
        assert tokenizer.decode(batch["input_ids"][i][labelled]) == f"{row['label']}<|im_end|>"
        positions = labelled.nonzero().squeeze(1)
        assert bool((positions.diff() == 1).all())  # one contiguous span
        np.testing.assert_array_equal(batch["labels"][i][labelled], batch["input_ids"][i][labelled])


def test_answers_by_task():
    assert answer_text({"task": "emotion", "label": " happy "}) == "happy"
    assert answer_text({"task": "sentiment", "label": -0.4}) == "negative"
    assert answer_text({"task": "sentiment", "label": 2}) == "positive"
    assert answer_text({"task": "open_vocabulary", "label": ["calm", "content"]}) == "calm, content"
    with pytest.raises(DataError, match="'x': sentiment label 0 has no positive/negative answer"):
        answer_text({"id": "x", "task": "sentiment", "label": 0.0})


def test_keep_ratio_and_dropout_draws_are_seeded_per_sample_and_epoch(processor, rows):
    first_collator = AffectVerseCollator.for_training(processor, modality_dropout=0.5, seed=3)
    first = first_collator(rows[:4])
    again_collator = AffectVerseCollator.for_training(processor, modality_dropout=0.5, seed=3)
    again = again_collator(rows[:4])
    assert first_collator.last_keep_ratio == again_collator.last_keep_ratio
    for key in ("input_ids", "labels", "future_input_features"):
        torch.testing.assert_close(first[key], again[key])
    alone = AffectVerseCollator.for_training(processor, modality_dropout=0.5, seed=3)
    alone(rows[2:3])  # batch-independent draws
    assert alone.last_keep_ratio[0] == first_collator.last_keep_ratio[2]
    assert all(0.3 <= rho <= 1.0 for rho in first_collator.last_keep_ratio)
    assert "keep_ratio" not in first  # the clip split: the clip is already cut, the model splits nothing
    later = AffectVerseCollator.for_training(processor, modality_dropout=0.5, seed=3)
    later.epoch = 1
    later(rows[:4])
    assert later.last_keep_ratio != first_collator.last_keep_ratio
    evaluation = AffectVerseCollator.for_prediction(processor, with_answer=True)
    batch = evaluation(rows[:2])
    assert evaluation.last_keep_ratio is None  # whole clips: nothing cut, nothing imagined past the clip
    assert not any(key.startswith("future_") for key in batch)


def test_modality_dropout_removes_one_modality_for_the_llm_too(processor, rows):
    collator = AffectVerseCollator.for_training(processor, modality_dropout=1.0, seed=0)
    batch = collator(rows[:6])
    assert sum(collator.dropped_modality.values()) == 6 and set(collator.dropped_modality) == {"video", "audio"}
    video_id, audio_id = processor.tokenizer.convert_tokens_to_ids(["<|VIDEO|>", "<|AUDIO|>"])
    has_video = (batch["input_ids"] == video_id).any(1)
    has_audio = (batch["input_ids"] == audio_id).any(1)
    assert not bool((has_video & has_audio).any())  # every sample kept exactly one modality
    assert int(has_video.sum()) == collator.dropped_modality["audio"]
    beliefs = (batch["input_ids"] == processor.belief_token_id).sum(1)
    assert beliefs.tolist() == [4] * 6  # single-modality placeholders (2 + 2)
    untouched = AffectVerseCollator.for_training(processor, modality_dropout=0.0)(rows[:6])
    assert ((untouched["input_ids"] == processor.belief_token_id).sum(1) == 8).all()


def test_bad_rows_are_skipped_and_counted_or_raise_in_strict_mode(processor, rows, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(bytes(range(256)) * 20)
    bad = [
        {**rows[0], "id": "missing", "video": str(tmp_path / "nope.mp4"), "audio": str(tmp_path / "nope.mp4")},
        {**rows[1], "id": "unreadable", "video": str(garbage), "audio": str(garbage)},
        {**rows[2], "id": "no-answer", "task": "sentiment", "label": 0.0, "label_set": None},
    ]
    collator = AffectVerseCollator.for_training(processor)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = collator([*bad, rows[3]])
    assert batch["input_ids"].shape[0] == 1  # only the good row
    assert dict(collator.skipped) == {"MediaNotFoundError": 1, "CorruptMediaError": 1, "no_answer": 1}
    messages = [str(w.message) for w in caught]
    assert any("skipping row 'missing'" in m and "nope.mp4: file not found" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        empty = collator(bad)  # a batch with nothing usable: an empty step, counted
    assert (empty["labels"] == -100).all() and collator.skipped["empty_batch"] == 1
    strict = AffectVerseCollator.for_training(processor, strict=True)
    with pytest.raises(DataError, match="row 'unreadable': .*garbage.mp4: cannot be read as media"):
        strict([bad[1], rows[3]])


def test_prompt_only_batches_end_at_the_assistant_turn(processor, rows):
    """What generation and closed-set scoring start from: no answer, no labels, belief placeholders last."""
    batch = AffectVerseCollator.for_prediction(processor)([{**rows[0], "label": None}])
    assert "labels" not in batch and "keep_ratio" not in batch
    tokens = processor.tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    assert tokens[-4:] == ["<|belief|>"] * 4
    assert processor.tokenizer.decode(batch["input_ids"][0]).endswith("<|im_start|>assistant\n" + "<|belief|>" * 4)


def test_a_shared_media_store_decodes_each_clip_once_and_changes_nothing(processor, rows, monkeypatch):
    import modeling_affectverse.data.collator as collator_module

    batch = [rows[0], rows[1]]
    plain = [AffectVerseCollator.for_prediction(processor, keep_ratio=r)(batch) for r in (1.0, 0.5)]
    calls = []
    decode = collator_module.decode_clip
    monkeypatch.setattr(collator_module, "decode_clip", lambda *a, **k: calls.append(a) or decode(*a, **k))
    options = MediaOptions(store={})
    shared = [AffectVerseCollator.for_prediction(processor, keep_ratio=r, media=options)(batch) for r in (1.0, 0.5)]
    assert len(calls) == len(batch)  # two collators (two keep ratios), one decode per clip
    for expected, got in zip(plain, shared, strict=True):
        assert expected.keys() == got.keys()
        for key, value in expected.items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(got[key], value, rtol=0, atol=0)
    # other decoding options are other entries of the same store: decoded again, not reused
    AffectVerseCollator.for_prediction(processor, media=MediaOptions(fps=2.0, store=options.store))(batch)
    assert len(calls) == 2 * len(batch)
