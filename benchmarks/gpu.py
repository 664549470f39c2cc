"""8. gpu_7b (`--gpu-7b`, CUDA only): the 7B-shaped random thinker in bf16, AffectVerse against the same model fed no
placeholders: training step time and memory, syncs, the EWM alone, prefill, decode, generate throughput, WETR."""

from __future__ import annotations

import statistics

import torch
from peft import get_peft_model

from benchmarks.inputs import repeat_batch, repeat_future, synthetic_batch, synthetic_future, synthetic_roles
from benchmarks.steps import (
    adamw,
    capture_ewm_call,
    decode_seconds_per_token,
    ewm_alone,
    generate_seconds,
    lora,
    optimizer_step,
    prefill,
    step_syncs,
    with_layout,
)
from benchmarks.syncs import future_encoder_syncs
from benchmarks.timing import cuda_peak_bytes, cuda_sync, interleaved, no_sync
from benchmarks.wetr_prefill import wetr_prefill
from modeling_affectverse import AffectVerseForConditionalGeneration
from modeling_affectverse.count_ewm import load_preset
from modeling_affectverse.wetr import WETRConfig


def gpu_section(
    preset: str,
    device: str,
    dtype: torch.dtype,
    repeats: int,
    video_grid=(8, 16, 16),
    audio_frames: int = 1536,
    text: int = 120,
    train_batches=(1, 4),
    generate_batches=(1, 8, 32),
    new_tokens: int = 8,
    compile_ewm: bool = False,
) -> dict:
    """The syncs table on a random model of `preset`'s shape at ~1036 tokens (512 video, 384 audio with the
    defaults), all on ONE model (LoRA + EWM) so that A/B differ only in the input: with belief placeholders (the EWM
    runs, imagination loss on: the input stands for a cut clip, and a 2-s future segment is encoded for the targets)
    or the same tokens without them and without a future (the thinker's path).

    Training step time and peak memory at each batch size (interleaved ABBA), the EWM forward and forward + backward
    alone, prefill and per-token decode ratios, greedy-generate samples/s, and sync-inducing ops per training step.
    `compile_ewm`: then also the EWM alone and the batch-1 training step with `compile_ewm()` (torch.compile).
    """
    config = load_preset(preset, belief_token_id=min(1023, load_preset(preset).get_text_config().vocab_size - 1))
    one = synthetic_batch(config, video_grid, audio_frames, text, device, dtype)
    future_grid = (min(3, video_grid[0]), video_grid[1], video_grid[2])  # 2 s at 3 fps: 3 temporal patches
    future_one = synthetic_future(config, future_grid, min(200, audio_frames), device, dtype)
    plain_one = {**one, "input_ids": one["input_ids"].clone()}
    plain_one["input_ids"][plain_one["input_ids"] == config.belief_token_id] = 20  # same length, no placeholders
    torch.manual_seed(0)
    model = AffectVerseForConditionalGeneration(config).to(device, dtype)
    model = get_peft_model(model, lora(["ewm"])).train()
    optimizer = adamw(model)
    cuda = device == "cuda"
    sync = cuda_sync if cuda else no_sync

    def train_step(batch, extra):
        optimizer_step(model, optimizer, batch, extra, sync)

    def peak(function) -> int | None:
        return cuda_peak_bytes(function) if cuda else None

    results = {
        "preset": preset,
        "device": torch.cuda.get_device_name() if cuda else device,
        "dtype": str(dtype),
        "sequence_tokens": int(one["input_ids"].shape[1]),
        "torch": torch.__version__,
    }

    def train_pair(size: int) -> dict:
        ours = with_layout(repeat_batch(one, size), config)
        future = repeat_future(future_one, size)
        plain = with_layout(repeat_batch(plain_one, size), config)
        seconds_plain, seconds_ours = interleaved(
            lambda: train_step(plain, {}), lambda: train_step(ours, future), repeats, sync
        )
        memory_ours = peak(lambda: train_step(ours, future))
        memory_plain = peak(lambda: train_step(plain, {}))
        return {
            "step_seconds": {"affectverse": seconds_ours, "no_placeholders": seconds_plain},
            "step_time_ratio": seconds_ours / seconds_plain,
            "tokens_per_second": size * results["sequence_tokens"] / seconds_ours,
            "peak_memory_bytes": {"affectverse": memory_ours, "no_placeholders": memory_plain},
            "peak_memory_ratio": None if memory_plain is None else memory_ours / memory_plain,
        }

    for size in train_batches:
        results[f"train_batch_{size}"] = train_pair(size)
    base = model.get_base_model()
    results["training_step_sync_ops"] = {
        "affectverse": step_syncs(model, with_layout(one, config), **future_one),
        "no_placeholders": step_syncs(model, plain_one),
        "encoders_on_the_future_segment": future_encoder_syncs(base, future_one),
    }
    args, kwargs = capture_ewm_call(model, one, **future_one)
    results["ewm_alone"] = ewm_alone(model.get_base_model().ewm, args, kwargs, device, max(repeats, 20))

    model.eval()
    prompt = {k: v for k, v in one.items() if k != "labels"}
    plain_prompt = {k: v for k, v in plain_one.items() if k != "labels"}

    seconds_plain, seconds_ours = interleaved(
        lambda: prefill(model, plain_prompt, sync), lambda: prefill(model, prompt, sync), repeats, sync
    )
    decode = {"ours": [], "plain": []}
    for i in range(repeats):
        pairs = [("plain", plain_prompt), ("ours", prompt)]
        for name, batch in pairs if i % 2 == 0 else pairs[::-1]:
            decode[name].append(decode_seconds_per_token(model, batch, new_tokens, sync))
    results["prefill"] = {
        "seconds": {"affectverse": seconds_ours, "no_placeholders": seconds_plain},
        "time_ratio": seconds_ours / seconds_plain,
    }
    ours_token, plain_token = statistics.median(decode["ours"]), statistics.median(decode["plain"])
    results["decode_per_token"] = {
        "seconds": {"affectverse": ours_token, "no_placeholders": plain_token},
        "time_ratio": ours_token / plain_token,
    }
    results["generate_samples_per_second"] = {}
    for size in generate_batches:
        batch = repeat_batch(prompt, size)
        generate_seconds(model, batch, new_tokens, sync)  # warm-up at this shape
        runs = max(1, repeats // 3)
        seconds = statistics.median(generate_seconds(model, batch, new_tokens, sync) for _ in range(runs))
        results["generate_samples_per_second"][str(size)] = size / seconds
    # WETR at the preset's shape: n_r = 9, or the depth - 1 on a shallower preset
    wetr = WETRConfig(trigger_interval=min(9, len(base.model.language_model.layers) - 1))
    roles = synthetic_roles(config, prompt["input_ids"])
    results["wetr_prefill"] = wetr_prefill(base, prompt, roles, wetr, repeats, sync, peak)
    if compile_ewm:
        model.get_base_model().compile_ewm()
        model.train()
        results["compiled_ewm"] = {
            "ewm_alone": ewm_alone(model.get_base_model().ewm, args, kwargs, device, max(repeats, 20)),
            "train_batch_1": train_pair(1),
        }
    return results
