"""Closed-set scoring: a distribution over the label set that ranks labels by their summed token log-probability."""

from __future__ import annotations

import pytest
import torch

from modeling_affectverse.data.collator import AffectVerseCollator
from modeling_affectverse.scoring_affectverse import closed_set_probabilities
from modeling_affectverse.tiny import MER_LABELS, synthetic_clip


def by_hand(model, processor, row: dict, answer: str) -> float:
    """log p(answer tokens + <|im_end|> | prompt), from one unbatched forward and the tokenizer."""
    batch = AffectVerseCollator.for_prediction(processor)([row])
    answer_ids = processor.tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
    full = AffectVerseCollator.for_prediction(processor, with_answer=True)([{**row, "answer": answer}])
    assert full["input_ids"].shape[1] == batch["input_ids"].shape[1] + len(answer_ids) + 1  # + the trailing "\n"
    with torch.no_grad():
        logits = model(**{k: v for k, v in full.items() if k != "labels"}).logits[0]
    start = batch["input_ids"].shape[1]
    total = 0.0
    for offset, token in enumerate(answer_ids):
        total += torch.log_softmax(logits[start + offset - 1].double(), dim=-1)[token].item()
    return total


@pytest.fixture
def clip_rows(tmp_path):
    """Two rows whose media are written as real files (the collator decodes from disk)."""
    from modeling_affectverse.data.demo_data import write_clip

    rows = []
    for i, seconds in enumerate((1.5, 2.5)):
        frames, wave = synthetic_clip(seconds, fps=12, size=112, sampling_rate=24_000, seed=i)
        path = str(tmp_path / f"clip{i}.mp4")
        write_clip(path, list(frames), wave)
        rows.append({"id": f"c{i}", "task": "emotion", "label": "happy", "label_set": list(MER_LABELS),
                     "video": path, "audio": path, "subtitle": f"clip {i}"})  # fmt: skip
    return rows


def test_probabilities_sum_to_one_and_rank_by_summed_log_probability(model, processor, clip_rows):
    labels = list(MER_LABELS)
    batch = AffectVerseCollator.for_prediction(processor, with_answer=True).collate_candidates(clip_rows, labels)
    log_likelihoods, probabilities = closed_set_probabilities(model, batch, len(labels))
    assert probabilities.shape == (2, len(labels))
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(2))
    for i, row in enumerate(clip_rows):
        expected = torch.tensor([by_hand(model, processor, row, label) for label in labels], dtype=torch.float64)
        torch.testing.assert_close(log_likelihoods[i].double(), expected, rtol=1e-4, atol=1e-3)
        assert int(probabilities[i].argmax()) == int(expected.argmax())


def test_candidate_count_must_divide_the_batch(model, processor, clip_rows):
    batch = AffectVerseCollator.for_prediction(processor, with_answer=True).collate_candidates(
        clip_rows[:1], ["happy", "sad", "angry"]
    )
    with pytest.raises(ValueError, match="3 sequences do not split into groups of 2"):
        closed_set_probabilities(model, batch, 2)


@pytest.mark.parametrize("overrides", [{}, {"ewm_injection": "single"}, {"ewm_belief_construction": "none"}])
def test_one_prefill_per_prompt_equals_one_forward_per_candidate(overrides, clip_rows):
    from modeling_affectverse.scoring_affectverse import candidate_log_likelihoods, candidate_token_ids
    from modeling_affectverse.tiny import build_tiny_model

    model, processor = build_tiny_model(**overrides)
    labels = [*MER_LABELS, "very surprised"]  # one answer of several tokens
    rows = [*clip_rows, {**clip_rows[0], "id": "silent", "audio": None}]  # a mixed audio-in-video batch too
    reference, _ = closed_set_probabilities(
        model,
        AffectVerseCollator.for_prediction(processor, with_answer=True).collate_candidates(rows, labels),
        len(labels),
    )
    prompts = AffectVerseCollator.for_prediction(processor)(rows)
    calls = []  # (batch, length) of every model call
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: calls.append(tuple(kwargs["input_ids"].shape)),
                                           with_kwargs=True)  # fmt: skip
    shared = candidate_log_likelihoods(model, prompts, candidate_token_ids(processor.tokenizer, labels))
    hook.remove()
    torch.testing.assert_close(shared, reference, rtol=1e-5, atol=1e-4)
    # one forward over the whole prompt for all samples (one prefill each), then only the candidates' few tokens
    prompt_length = prompts["input_ids"].shape[1]
    assert calls[0] == (len(rows), prompt_length)
    width = max(len(ids) for ids in candidate_token_ids(processor.tokenizer, labels))
    assert calls[1:] == [(len(rows) * len(labels), width - 1)]  # every candidate's tokens but its last, batched
