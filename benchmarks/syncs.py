"""Counting the ops that make the host wait for the device, with `torch.profiler` on CPU.

On a GPU each of these reads a device value back to the host and so waits for every queued kernel: a scalar
(`item`, `_local_scalar_dense`: `int(t)`, `float(t)`, `t.tolist()` element by element), a data-dependent size
(`nonzero`: boolean indexing, `masked_select`, `nonzero`) or a truth value (`is_nonzero`: `bool(t)`, `if t:`). On CPU
they run the same aten ops, so counting them here tells what would stall there.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from torch.profiler import ProfilerActivity, profile

SYNC_OPS = ("aten::item", "aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero")


def count_sync_ops(function: Callable[[], Any]) -> tuple[dict[str, int], Any]:
    """Run `function()` under the CPU profiler; returns ({sync op: count} for the ops that occurred, its result)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        result = function()
    counts = collections.Counter(event.name for event in prof.events() if event.name in SYNC_OPS)
    return dict(counts), result


def count_ops(function: Callable[[], Any]) -> tuple[int, Any]:
    """Run `function()` under the CPU profiler; returns (number of aten ops launched at the top level, its result):
    a proxy for kernel launches."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        result = function()
    top = [e for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None]
    return len(top), result


def future_encoder_syncs(model, batch: dict) -> dict[str, int]:
    """Sync-inducing ops of the thinker's own encoders (`model.model`'s `get_video_features` /
    `get_audio_features`, no gradient) on a batch's clip-split future inputs: what encoding the future segment costs
    in host waits whatever the EWM does."""
    import torch

    def encode():
        with torch.no_grad():
            model.model.get_video_features(batch["future_pixel_values_videos"], batch["future_video_grid_thw"])
            model.model.get_audio_features(batch["future_input_features"], batch["future_feature_attention_mask"])

    return count_sync_ops(encode)[0]


__all__ = ["SYNC_OPS", "count_ops", "count_sync_ops", "future_encoder_syncs"]
