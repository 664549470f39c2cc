"""Reference outputs of the EWM on fixed-seed modules and a mixed batch, recorded before the sync-free rewrite
(issue 12) so that the rewrite is checked to give today's numbers. Regenerate only for an intended change:

    python -m tests.modeling_affectverse.ewm_golden

Not regenerated for issue 21 (the embedded split is the paper's, kept for reproduction): the recorded file shows what
that issue changed in it and nothing else (`MOVED_BY_ISSUE_21`).
"""

from __future__ import annotations

import os

import torch

from tests.modeling_affectverse.test_ewm import batch, make_ewm

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "ewm_golden.pt")
VARIANTS = {
    "default": {},
    "mean": {"ewm_aggregation": "mean"},
    "pooling": {"ewm_belief_construction": "pooling"},
    "random_tokens": {"ewm_belief_construction": "random_tokens"},
    "online_no_time": {"ewm_imagination_target": "online", "ewm_time_embedding": False},
    "self_no_residual": {"ewm_context_mode": "self", "ewm_boundary_residual": False},
    "cross": {"ewm_context_mode": "cross"},
}
# dual, video only, audio only, neither, too-short video with audio, long dual
VIDEO_LENGTHS, AUDIO_LENGTHS = [6, 6, 0, 0, 1, 9], [5, 0, 5, 0, 5, 8]
KEEP_RATIOS = {"rho1": None, "rho_mixed": torch.tensor([0.5, 0.7, 0.5, 1.0, 0.3, 0.4])}


# Issue 21, item 3: the rollout's query times are fixed bins over the horizon after the end of the observation (they
# were read off the real future in training and assumed from the observed span at inference), and context times are
# relative to that end (they were relative to the own stream's last token). Everything the rollout's output feeds
# moves with it; the split, the targets, the baselines and the counts do not. Variants without time embeddings (or
# without imagination) are unchanged entirely.
MOVED_BY_ISSUE_21 = ("belief_tokens", "imagination_loss", "imagination_cosine", "pairs0.imagined", "pairs1.imagined")


def moved_by_issue_21(variant: str) -> tuple[str, ...]:
    """The outputs of `variant` whose recorded values issue 21 changed (empty: the variant must equal the file)."""
    overrides = VARIANTS[variant]
    timed = overrides.get("ewm_time_embedding", True) and overrides.get("ewm_belief_construction", "ewm") == "ewm"
    return MOVED_BY_ISSUE_21 if timed else ()


def assert_matches_golden(got: dict, expected: dict, moved: tuple[str, ...], message: str, tolerance=1e-5) -> None:
    """Every output equals the reference but the `moved` ones, which must differ (so the list stays true)."""
    assert got.keys() == expected.keys(), message
    for name, value in expected.items():
        if name in moved:
            continue
        torch.testing.assert_close(got[name], value, rtol=tolerance, atol=1e-6, msg=f"{message}/{name}")
    if moved:
        assert not torch.allclose(got["belief_tokens"], expected["belief_tokens"], atol=1e-4), message


def golden_inputs(with_times: bool):
    """The mixed batch, and token times (seconds, a 25 Hz grid with an offset per sample) or None."""
    hidden, video, audio = batch(VIDEO_LENGTHS, AUDIO_LENGTHS, seq=32, seed=3)
    times = None
    if with_times:
        times = torch.arange(32).float()[None].repeat(6, 1) * 0.04 + torch.arange(6).float()[:, None]
    return hidden, video, audio, times


def flatten(out) -> dict[str, torch.Tensor]:
    """The output's tensors by name, pairs included."""
    values = {}
    names = ("belief_tokens", "belief_counts", "imagination_loss", "imagination_cosine", "imagination_baselines",
             "target_similarity", "video_present", "audio_present", "video_past_len", "audio_past_len")  # fmt: skip
    for name in names:
        value = getattr(out, name)
        if value is not None:
            values[name] = value.detach().clone()
    for modality, pairs in out.pairs.items():
        for name in ("imagined", "target", "copy_last"):
            values[f"pairs{modality}.{name}"] = getattr(pairs, name).clone()
    return values


def compute() -> dict[str, dict[str, torch.Tensor]]:
    results = {}
    for variant, overrides in VARIANTS.items():
        ewm = make_ewm(seed=7, **overrides)
        for rho_name, rho in KEEP_RATIOS.items():
            for with_times in (False, True):
                hidden, video, audio, times = golden_inputs(with_times)
                with torch.no_grad():
                    out = ewm(hidden, video, audio, keep_ratio=rho, token_times=times)
                results[f"{variant}/{rho_name}/{'times' if with_times else 'index'}"] = flatten(out)
    return results


if __name__ == "__main__":
    torch.save(compute(), GOLDEN)
    print("wrote", GOLDEN)
