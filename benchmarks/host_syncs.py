"""5. syncs: sync-inducing ops of a training step with and without the EWM, and the EWM forward alone."""

from __future__ import annotations

from peft import get_peft_model

from benchmarks.inputs import midsize_pair
from benchmarks.steps import capture_ewm_call, ewm_alone, lora, step_syncs, with_layout
from benchmarks.syncs import future_encoder_syncs


def sync_section(repeats: int) -> dict:
    """On CPU, mid-size model, one 8 s clip: sync-inducing ops in one training step of AffectVerse (with the
    collator's layout, and without it) and of the same model fed no placeholders; the EWM forward alone (time,
    forward + backward time, aten ops, syncs) on the arguments one training forward gives it."""
    affectverse, _, processor, inputs = midsize_pair(seconds=8.0, frame_size=112)
    model = get_peft_model(affectverse, lora(["ewm"])).train()
    with_beliefs, plain = inputs(True, "happy", cut=0.5), inputs(False, "happy", cut=0.5)  # the clip cut at 4 s
    config = affectverse.config
    counts = {
        "affectverse_collator_layout": step_syncs(model, with_layout(with_beliefs, config)),
        "affectverse_no_layout": step_syncs(model, with_beliefs),
        "same_model_no_placeholders": step_syncs(model, plain),
        "encoders_on_the_future_segment": future_encoder_syncs(affectverse, with_beliefs),
    }
    args, kwargs = capture_ewm_call(model, with_beliefs)
    return {
        "training_step_sync_ops": counts,
        "ewm_alone_cut_at_0.5": ewm_alone(model.get_base_model().ewm, args, kwargs, "cpu", max(repeats, 20)),
        "sequence_tokens": int(with_beliefs["input_ids"].shape[1]),
    }
