"""6. wetr: prefill time and peak memory with WETR's token refinement against without, and the tokens left after each
trigger. CPU peak memory is read from the profiler's allocation and free events (`timing.profiled_peak_bytes`)."""

from __future__ import annotations

import torch

from benchmarks.inputs import midsize_pair
from benchmarks.steps import prefill
from benchmarks.timing import interleaved, no_sync, profiled_peak_bytes
from modeling_affectverse.wetr import WETRConfig


def wetr_section(repeats: int) -> dict:
    """Prefill time and peak memory with WETR at the paper's ratios and delta vs without, on the mid-size model (6
    layers, so the trigger interval is 2: layers 2 and 4 refine; the 7B default of 9 needs more layers), the same
    prompt with the query spans, interleaved; and how many tokens the layers after each trigger see."""
    affectverse, _, processor, inputs = midsize_pair(seconds=8.0, frame_size=112)
    affectverse.eval()
    prompt = inputs(True, None, wetr_queries=True)
    roles = processor.token_roles(prompt["input_ids"])
    figures = wetr_prefill(affectverse, prompt, roles, WETRConfig(trigger_interval=2), repeats)
    return {"sequence_tokens": int(prompt["input_ids"].shape[1]), **figures}


def wetr_prefill(
    model,
    prompt: dict,
    roles: torch.Tensor,
    wetr: WETRConfig,
    repeats: int,
    sync=no_sync,
    peak=profiled_peak_bytes,
) -> dict:
    """Prefill of `prompt` with WETR (`wetr`, the prompt's token `roles`) vs without, interleaved; the
    peak memory of each (`peak(function)`: bytes, or None where it cannot be read); and the tokens the layers after
    each trigger see."""
    refined = {**prompt, "wetr_roles": roles}

    def with_wetr():
        model.enable_wetr(wetr)
        prefill(model, refined, sync)
        model.disable_wetr()

    seconds_off, seconds_wetr = interleaved(lambda: prefill(model, prompt, sync), with_wetr, repeats)
    memory_off, memory_wetr = peak(lambda: prefill(model, prompt, sync)), peak(with_wetr)
    model.enable_wetr(wetr, record=True)
    with torch.no_grad():
        model(**refined)
    seen = [int((record["kept_index"] >= 0).sum()) for record in model.wetr_record]
    model.disable_wetr()
    return {
        "trigger_layers": wetr.trigger_layers(len(model.model.language_model.layers)),
        "tokens_after_each_trigger": seen,
        "seconds": {"wetr": seconds_wetr, "off": seconds_off},
        "time_ratio": seconds_wetr / seconds_off,
        "peak_memory_bytes": {"wetr": memory_wetr, "off": memory_off},
        "peak_memory_ratio": None if memory_off is None else memory_wetr / memory_off,
    }
