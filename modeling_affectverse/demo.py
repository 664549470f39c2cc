"""Inference demo on the embedded default: `python -m modeling_affectverse.demo`.

Builds the tiny random AffectVerse model and its processor offline, makes one synthetic clip
(frames + the clip's own audio track), runs `generate`, and prints the answer and statistics of
the belief tokens the Emotion World Module injected. The weights are random, so the answer is
noise: the demo shows the pipeline, not a prediction.
"""

from __future__ import annotations

import argparse

import torch

from .processing_affectverse import task_question
from .tiny import MER_LABELS, build_tiny_model, synthetic_clip


def build_parser() -> argparse.ArgumentParser:
    """The command line this script takes (the README's commands are checked against it)."""
    parser = argparse.ArgumentParser(description="AffectVerse inference demo on the tiny embedded default")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the synthetic clip")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    model, processor = build_tiny_model(seed=args.seed)
    frames, wave = synthetic_clip(args.seconds, seed=args.seed)
    prompt = processor.build_prompt(
        task_question("emotion", list(MER_LABELS)), subtitle="I did not expect that at all.", video=True
    )
    inputs = processor(
        text=[prompt],
        videos=[frames],
        audio=[wave],
        load_audio_from_video=True,
        audio_from_video_indices=[0],
        return_tensors="pt",
    )
    with torch.no_grad():
        prefill = model(**inputs, use_audio_in_video=True)
        generated = model.generate(
            **inputs, use_audio_in_video=True, max_new_tokens=args.max_new_tokens, do_sample=False
        )
    answer = processor.batch_decode(generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]
    ids = inputs["input_ids"][0]
    beliefs = prefill.belief_tokens[0, : int(prefill.belief_counts[0])]
    print(f"clip: {len(frames)} frames at {processor.fps:g} fps, {len(wave) / 16000:.2f} s audio (in-video track)")
    print(
        f"tokens: {len(ids)} total, {int((ids == model.config.video_token_id).sum())} video, "
        f"{int((ids == model.config.audio_token_id).sum())} audio, {int((ids == processor.belief_token_id).sum())} "
        "belief placeholders"
    )
    print(
        f"belief tokens: {tuple(beliefs.shape)}, mean {beliefs.mean():.4f}, std {beliefs.std():.4f}, "
        f"per-token L2 norm {beliefs.norm(dim=-1).mean():.4f}"
    )
    print(f"answer (random weights): {answer!r}")


if __name__ == "__main__":
    main()
