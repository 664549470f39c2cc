"""2. train_step: one optimizer step (forward, backward, AdamW) of AffectVerse (LoRA + EWM, imagination loss on,
the clip cut at a drawn rho and its future encoded) against the LoRA-only thinker on the whole clip, on
`benchmarks/midsize.json` (hidden 768, 6 layers). Peak memory = parameters + gradients + optimizer states + tensors
saved for backward (counted with `saved_tensors_hooks`; CPU has no allocator peak to read).

7. split: one optimizer step with the clip split (the cut clip + its future segment, encoded for the targets) against
the paper's embedded split (the whole clip through the encoders, the future tokens dropped before the LLM), same
weights, same rho, interleaved."""

from __future__ import annotations

import torch
from peft import get_peft_model

from benchmarks.inputs import midsize_pair
from benchmarks.steps import adamw, lora, optimizer_step, total_loss
from benchmarks.timing import interleaved, saved_bytes, state_bytes


def train_section(repeats: int) -> dict:
    """Step time and peak memory, AffectVerse against LoRA-only, at rho = 0.95 and at rho drawn as in training."""
    affectverse, thinker, processor, inputs = midsize_pair(seconds=8.0, frame_size=112)
    ours = get_peft_model(affectverse, lora(["ewm"])).train()
    base = get_peft_model(thinker, lora()).train()
    plain = inputs(False, "happy")
    generator = torch.Generator().manual_seed(0)
    drawn = [inputs(True, "happy", cut=float(0.3 + 0.7 * torch.rand(1, generator=generator))) for _ in range(8)]
    worst = inputs(True, "happy", cut=0.95)  # worst case for the target: the LLM sees almost the whole clip
    optimizers = {id(m): adamw(m) for m in (ours, base)}
    cycle = iter(drawn * (2 * repeats + 4))

    def step_base():
        optimizer_step(base, optimizers[id(base)], plain)

    time_base, time_ours = interleaved(
        step_base, lambda: optimizer_step(ours, optimizers[id(ours)], next(cycle)), repeats
    )
    time_base_2, time_worst = interleaved(step_base, lambda: optimizer_step(ours, optimizers[id(ours)], worst), repeats)

    def forward_backward(model, batch):
        total_loss(model(**batch)).backward()

    memory_ours = state_bytes(ours) + saved_bytes(lambda: forward_backward(ours, worst))
    memory_base = state_bytes(base) + saved_bytes(lambda: forward_backward(base, plain))
    ours.zero_grad(set_to_none=True), base.zero_grad(set_to_none=True)
    trainable_ours = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    trainable_base = sum(p.numel() for p in base.parameters() if p.requires_grad)
    return {
        "sequence_tokens": {
            "whole_clip": int(plain["input_ids"].shape[1]),
            "cut_at_0.95": int(worst["input_ids"].shape[1]),
        },
        "trainable_parameters": {"affectverse": trainable_ours, "lora_only": trainable_base},
        "step_seconds": {
            "affectverse_rho_0.95": time_worst,
            "affectverse_rho_training": time_ours,
            "lora_only": time_base_2,
        },
        "train_step_time_ratio": time_worst / time_base_2,
        "train_step_time_ratio_rho_training": time_ours / time_base,
        "peak_memory_bytes": {"affectverse": memory_ours, "lora_only": memory_base},
        "train_peak_memory_ratio": memory_ours / memory_base,
    }


def split_section(repeats: int) -> dict:
    """One optimizer step of AffectVerse with the clip split vs the paper's embedded split, the same
    weights (two copies), the same clip and rho, interleaved. Clip: the cut clip through the encoders and the LLM, the
    next 2 s through the encoders again (no gradient) for the targets. Embedded: the whole clip through the encoders,
    the future tokens dropped before the LLM."""
    figures = {}
    clip_model, _, _, clip_inputs = midsize_pair(seconds=8.0, frame_size=112)
    embedded_model, _, _, embedded_inputs = midsize_pair(seconds=8.0, frame_size=112, ewm_split="embedded")
    embedded_model.load_state_dict(clip_model.state_dict())
    models = {
        name: get_peft_model(model, lora(["ewm"])).train()
        for name, model in (("clip", clip_model), ("embedded", embedded_model))
    }
    optimizers = {name: adamw(m) for name, m in models.items()}
    for rho in (0.5, 0.95):
        clip_batch = clip_inputs(True, "happy", cut=rho)
        embedded_batch = {**embedded_inputs(True, "happy"), "keep_ratio": torch.tensor([rho])}
        seconds_embedded, seconds_clip = interleaved(
            lambda b=embedded_batch: optimizer_step(models["embedded"], optimizers["embedded"], b),
            lambda b=clip_batch: optimizer_step(models["clip"], optimizers["clip"], b),
            repeats,
        )
        figures[f"rho_{rho:g}"] = {
            "step_seconds": {"clip": seconds_clip, "embedded": seconds_embedded},
            "time_ratio": seconds_clip / seconds_embedded,
            "llm_tokens": int(clip_batch["input_ids"].shape[1]),
            "future_video_frames": int(clip_batch["future_video_grid_thw"][0, 0]) * 2,
        }
    figures["split_train_step_time_ratio"] = max(figures[f"rho_{r}"]["time_ratio"] for r in ("0.5", "0.95"))
    return figures
