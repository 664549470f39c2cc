"""AffectVerseProcessor: placeholders, prompt, save/load, token budget."""

import pytest
import torch
from transformers import AutoProcessor

from modeling_affectverse import BELIEF_TOKEN, AffectVerseProcessor
from modeling_affectverse.processing_affectverse import SYSTEM_PROMPT, task_question
from modeling_affectverse.tiny import MER_LABELS, build_tiny_tokenizer, synthetic_clip


@pytest.mark.parametrize(
    "combo, per_half", [("video+audio", 4), ("audio-in-video", 4), ("video", 2), ("audio", 2), ("text", 0)]
)
def test_placeholders_at_the_two_positions(make_inputs, processor, combo, per_half):
    ids = make_inputs([combo])["input_ids"][0].tolist()
    belief = processor.belief_token_id
    positions = [i for i, t in enumerate(ids) if t == belief]
    assert len(positions) == 2 * per_half
    if not per_half:
        return
    tok = processor.tokenizer
    eos = {tok.convert_tokens_to_ids("<|vision_eos|>"), tok.convert_tokens_to_ids("<|audio_eos|>")}
    last_media_end = max(i for i, t in enumerate(ids) if t in eos)
    assert positions[:per_half] == list(range(last_media_end + 1, last_media_end + 1 + per_half))
    # the second half closes the prompt, right after "<|im_start|>assistant\n"
    assert positions[per_half:] == list(range(len(ids) - per_half, len(ids)))
    header = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    assert ids[len(ids) - per_half - len(header) : len(ids) - per_half] == header


def test_answer_follows_the_second_half(processor):
    text = processor.build_prompt("q?", video=True, audio=True, answer="happy")
    placed = processor.insert_belief_placeholders(text, video=True, audio=True)
    assert placed.endswith("assistant\n" + BELIEF_TOKEN * 4 + "happy<|im_end|>\n")
    assert processor.insert_belief_placeholders(placed, video=True, audio=True) == placed  # idempotent


def test_prompt_has_the_papers_parts(processor):
    question = task_question("emotion", list(MER_LABELS))
    text = processor.build_prompt(question, subtitle="I lost it", video=True, audio=True)
    assert SYSTEM_PROMPT in text and "Subtitle: I lost it" in text
    assert all(label in text for label in MER_LABELS)
    assert text.index("<|VIDEO|>") < text.index("<|AUDIO|>") < text.index("Subtitle:")
    with pytest.raises(ValueError, match="unknown task"):
        task_question("valence")


def test_save_and_auto_processor_round_trip(processor, make_inputs, tmp_path):
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, AffectVerseProcessor)
    assert (loaded.belief_token_id, loaded.fps, loaded.frame_size, loaded.max_length) == (
        processor.belief_token_id,
        processor.fps,
        processor.frame_size,
        processor.max_length,
    )
    frames, wave = synthetic_clip(2.0)
    text = processor.build_prompt("q?", video=True, audio=True)
    a = processor(text=[text], videos=[frames], audio=[wave], return_tensors="pt")
    b = loaded(text=[text], videos=[frames], audio=[wave], return_tensors="pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tokenizer_without_belief_token_is_refused(processor):
    with pytest.raises(ValueError, match="no <\\|belief\\|> token"):
        AffectVerseProcessor(
            processor.image_processor, processor.video_processor, processor.feature_extractor, build_tiny_tokenizer()
        )


def test_text_over_budget_raises(processor):
    text = processor.build_prompt("q?", subtitle="happy sad " * 200)
    with pytest.raises(ValueError, match="the text alone is \\d+ tokens, over the budget of 64"):
        processor(text=[text], max_length=64)


def _fit_long_clip(processor, tokens_over: int, warning: str):
    """An 8 s clip processed without a budget, and again with a budget `tokens_over` tokens smaller."""
    frames, wave = synthetic_clip(8.0)
    text = processor.build_prompt("q?", video=True, audio=True)
    full = processor(text=[text], videos=[frames], audio=[wave], max_length=None, return_tensors="pt")
    budget = full["input_ids"].shape[1] - tokens_over
    with pytest.warns(UserWarning, match=warning):
        fitted = processor(text=[text], videos=[frames], audio=[wave], max_length=budget, return_tensors="pt")
    return full, fitted, budget


def test_long_clip_is_fitted_by_lowering_the_frame_rate(processor):
    full, fitted, budget = _fit_long_clip(processor, 20, "lowered to")
    assert fitted["input_ids"].shape[1] <= budget
    assert fitted["video_grid_thw"][0, 0] < full["video_grid_thw"][0, 0]
    # the lowered frame rate is what the positions see: seconds per temporal grid doubled
    assert float(fitted["video_second_per_grid"][0]) == pytest.approx(2 * float(full["video_second_per_grid"][0]))
    # audio untouched when frames alone suffice
    assert torch.equal(fitted["feature_attention_mask"], full["feature_attention_mask"])


def test_audio_is_shortened_when_frames_are_not_enough(processor):
    full, fitted, budget = _fit_long_clip(processor, 150, "audio shortened")
    assert fitted["input_ids"].shape[1] <= budget
    assert fitted["feature_attention_mask"].sum() < full["feature_attention_mask"].sum()
    assert fitted["video_grid_thw"][0, 0] == 3  # 24 -> 12 -> 6 frames; 3 would be under 2 temporal patches
