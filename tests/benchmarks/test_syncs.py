"""Issue 12: a whole training step of AffectVerse makes the host wait for the device no more often than the same
step of the thinker on the same clips without belief placeholders, plus the thinker's own encoders run on the clip
split's future segments (issue 21: their syncs are the encoders', not the EWM's). Counted with `torch.profiler` on
CPU."""

from __future__ import annotations

import collections

from benchmarks.syncs import count_sync_ops, future_encoder_syncs
from modeling_affectverse.data.collator import AffectVerseCollator
from modeling_affectverse.data.manifest import load_manifest
from modeling_affectverse.tiny import build_tiny_processor, tiny_model


def training_step_syncs(rows, placeholders: bool, with_layout: bool) -> tuple[dict, int]:
    processor = build_tiny_processor()
    if not placeholders:
        processor.belief_injection = "none"
    model = tiny_model(processor, 0).train()
    batch = AffectVerseCollator.for_training(processor)(rows)  # rho drawn per row, modalities mixed below
    if not with_layout:
        batch.pop("batch_layout")
    beliefs = int((batch["input_ids"] == processor.belief_token_id).sum())

    def step():
        out = model(**batch)
        loss = out.loss if out.imagination_loss is None else out.loss + out.imagination_loss
        loss.backward()
        return out

    counts, out = count_sync_ops(step)
    assert (out.imagination_loss is not None) == placeholders
    if placeholders:  # minus what the thinker's encoders cost on the future segments
        encoders = collections.Counter(future_encoder_syncs(model, batch))
        assert encoders  # they do read sizes back (the audio tower's lengths, the vision tower's grid)
        counts = dict(collections.Counter(counts) - encoders)
    return counts, beliefs


def test_a_training_step_adds_no_host_sync(demo_manifest):
    rows = [row for row in load_manifest(demo_manifest)][:4]
    rows[1] = {**rows[1], "audio": None}  # silent video
    rows[2] = {**rows[2], "video": None}  # audio only
    plain, none = training_step_syncs(rows, placeholders=False, with_layout=True)
    assert none == 0
    for with_layout in (True, False):  # the collator's layout, or the one read in the model (a copy, not a scalar)
        counts, beliefs = training_step_syncs(rows, placeholders=True, with_layout=with_layout)
        assert beliefs > 0
        assert counts == plain, (with_layout, counts, plain)
