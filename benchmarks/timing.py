"""The one way this suite times and weighs things: medians of repeated calls (two callables interleaved, ABBA), peak
memory on CPU (from the profiler's events) and on CUDA (the allocator's counter), bytes saved for backward."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def no_sync() -> None:
    """The CPU's sync: nothing to wait for."""


def cuda_sync() -> None:
    torch.cuda.synchronize()


def median_seconds(function: Callable[[], object], repeats: int, sync: Callable[[], None] = no_sync) -> float:
    """Median wall seconds of `function()` over `repeats` calls after one warm-up; `sync` waits for the device
    before the clock starts and before it stops."""
    function()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(first, second, repeats: int, sync: Callable[[], None] = no_sync) -> tuple[float, float]:
    """Median seconds of two callables, run alternately (ABBA...) after one warm-up each."""
    first(), second()
    times_a, times_b = [], []
    for i in range(repeats):
        order = ((first, times_a), (second, times_b)) if i % 2 == 0 else ((second, times_b), (first, times_a))
        for function, sink in order:
            sync()
            start = time.perf_counter()
            function()
            sync()
            sink.append(time.perf_counter() - start)
    return statistics.median(times_a), statistics.median(times_b)


def profiled_peak_bytes(function) -> int:
    """Peak bytes allocated on the CPU above the start while `function()` runs: the running sum of every
    allocation and free the profiler records (`profile_memory=True`), in time order. CPU has no allocator peak
    counter like `torch.cuda.max_memory_allocated`; this reads the same quantity from the events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        function()
    live = peak = 0
    for event in sorted(profiler.events(), key=lambda event: event.time_range.start):
        live += event.self_cpu_memory_usage  # an op's own allocations (+), a free event's release (-)
        peak = max(peak, live)
    return peak


def cuda_peak_bytes(function) -> int:
    """Peak bytes the CUDA allocator held while `function()` ran."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    function()
    return torch.cuda.max_memory_allocated()


def saved_bytes(step) -> int:
    """Bytes of the tensors autograd saves for backward during `step()` (each storage counted once)."""
    seen, total = set(), [0]

    def pack(tensor):
        key = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total[0] += key[1]
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return total[0]


def state_bytes(model) -> int:
    """Parameters + gradients + AdamW's two moments of the trainable ones."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return params + 3 * sum(p.numel() * p.element_size() for p in trainable)
