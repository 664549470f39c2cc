"""3. inference: prefill time and per-token decode time against the plain thinker with the same weights."""

from __future__ import annotations

import statistics

from benchmarks.inputs import midsize_pair
from benchmarks.steps import decode_seconds_per_token, prefill
from benchmarks.timing import interleaved


def inference_section(repeats: int, new_tokens: int = 32) -> dict:
    """Prefill and per-token decode, AffectVerse against the plain thinker, interleaved."""
    affectverse, thinker, _, inputs = midsize_pair(seconds=8.0, frame_size=112)
    affectverse.eval(), thinker.eval()
    with_beliefs, plain = inputs(True, None), inputs(False, None)

    prefill_base, prefill_ours = interleaved(
        lambda: prefill(thinker, plain), lambda: prefill(affectverse, with_beliefs), repeats
    )
    decode = {"plain": [], "affectverse": []}
    for i in range(repeats):  # interleaved, alternating which goes first
        pairs = [("plain", thinker, plain), ("affectverse", affectverse, with_beliefs)]
        for name, model, batch in pairs if i % 2 == 0 else pairs[::-1]:
            decode[name].append(decode_seconds_per_token(model, batch, new_tokens))
    decode_base, decode_ours = statistics.median(decode["plain"]), statistics.median(decode["affectverse"])
    return {
        "prompt_tokens": {
            "affectverse": int(with_beliefs["input_ids"].shape[1]),
            "plain": int(plain["input_ids"].shape[1]),
        },
        "prefill_seconds": {"affectverse": prefill_ours, "plain": prefill_base},
        "prefill_time_ratio": prefill_ours / prefill_base,
        "decode_seconds_per_token": {"affectverse": decode_ours, "plain": decode_base},
        "decode_time_per_token_ratio": decode_ours / decode_base,
    }
