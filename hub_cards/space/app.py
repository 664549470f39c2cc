"""AffectVerse Space: drop in a clip, see the emotion, its probabilities and how the belief forms over time.

    python hub_cards/space/app.py                       # the demo model (outputs/demo if trained, else tiny random)
    python hub_cards/space/app.py --model org/affectverse --port 7860

The page shows the predicted label with every label's probability (closed-set scoring), the generated answer, and the
belief trajectory of the paper's case study (§4.4): each label's probability as the observed fraction of the clip grows
from 10% to 100% (the evaluation runner's keep-ratio rule), drawn as a plot, with the last observed frame at each
fraction under it. Everything goes through the pipeline the model card documents (`video-classification`,
`trajectory=True`). Bad input (not a video, no audio track, too long, a URL) gets a message in the page.

On a Hub Space the model comes from `AFFECTVERSE_MODEL` (a Hub id, loaded with remote code); run from a checkout it
can also be `tiny` or an adapter folder written by `training/sft.py`.
"""

from __future__ import annotations

import argparse
import glob
import html
import io
import os
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a test or an offline laptop

import gradio as gr  # noqa: E402  (GRADIO_ANALYTICS_ENABLED must be set before gradio is imported)
import numpy as np  # noqa: E402

# the checkout this file sits in (where the quickstart demo writes outputs/ and data/); on a Space, the app's folder
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# copies of the package's MER_LABELS and TASKS: a published Space loads the model as remote code and has no
# modeling_affectverse to import them from
MER_LABELS = ["worried", "happy", "neutral", "angry", "surprise", "sad"]
TASKS = ["emotion", "sentiment", "open_vocabulary"]
DEFAULT_MAX_SECONDS = 30.0
PLACEHOLDER_MODEL = "org/affectverse"  # the template README's model: replaced by the export


class InputProblem(ValueError):
    """An input the app refuses, with the message the page shows."""


# -- model --------------------------------------------------------------------------------------------------------
def build_recognizer(model: str | None):
    """The emotion pipeline for `model`: a Hub id or full model folder (remote code), an adapter folder from
    `training/sft.py`, or `tiny` (the embedded random model). None: the quickstart demo's adapter when it has been
    trained (`outputs/demo`), else `tiny`. Returns `(pipeline, description)`."""
    if model is None:
        model = os.environ.get("AFFECTVERSE_MODEL") or space_model()
    if model is None:
        trained = os.path.join(ROOT, "outputs", "demo")
        model = trained if os.path.isfile(os.path.join(trained, "adapter_config.json")) else "tiny"
    if model == "tiny" or os.path.isfile(os.path.join(model, "adapter_config.json")):  # a checkout's models
        from modeling_affectverse.loading import load
        from modeling_affectverse.pipeline_affectverse import AffectVerseEmotionPipeline

        network, processor = load(model)  # the loader every script uses: the same model the runner scores
        network.eval()
        note = (
            "the tiny embedded model, random weights: its answers are noise (python3 quickstart.py demo trains it)"
            if model == "tiny"
            else f"the adapter in {model}"
        )
        return AffectVerseEmotionPipeline(model=network, processor=processor), note
    from transformers import pipeline

    return pipeline("video-classification", model=model, trust_remote_code=True), model


def space_model() -> str | None:
    """The model a published Space names under `models:` in its README (the export writes it), None otherwise (a
    checkout, where the README lists the placeholder `org/affectverse`)."""
    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md")
    if not os.path.isfile(readme):
        return None
    from huggingface_hub import metadata_load

    models = (metadata_load(readme) or {}).get("models") or []
    return models[0] if models and models[0] != PLACEHOLDER_MODEL else None


def demo_clips(folder: str | None) -> dict[str, str]:
    """Demo clips by name: the quickstart's `data/demo/clips` (or `folder`), else a few generated now."""
    folder = folder or os.path.join(ROOT, "data", "demo", "clips")
    paths = sorted(glob.glob(os.path.join(folder, "*.mp4")))
    if not paths:
        try:
            from modeling_affectverse.data.demo_data import generate_demo_dataset
        except ImportError:  # a Space without the training package: uploads only
            return {}
        target = tempfile.mkdtemp(prefix="affectverse-demo-")
        generate_demo_dataset(target, num_clips=6, seed=0, progress=False)
        paths = sorted(glob.glob(os.path.join(target, "clips", "*.mp4")))
    return {os.path.basename(p): p for p in paths[:12]}


# -- input checks -------------------------------------------------------------------------------------------------
def resolve_clip(upload: str | None, picked: str | None, clips: dict[str, str]) -> str:
    """The clip to analyse: an upload wins over a picked demo clip. A typed URL or a path outside the demo clips is
    refused: a hosted app never fetches links nor reads its own disk on request."""
    if upload:
        return upload
    picked = (picked or "").strip()
    if not picked:
        raise InputProblem("Upload a video, or pick one of the demo clips.")
    if "://" in picked or picked.lower().startswith("www."):
        raise InputProblem(f"Links are not fetched ({picked}): download the video and upload the file.")
    if picked not in clips:
        raise InputProblem(f"'{picked}' is not one of the demo clips: pick one from the list, or upload a file.")
    return clips[picked]


def check_clip(path: str, max_seconds: float) -> list[str]:
    """Refuse what cannot be analysed (not a video, too long); return notes for what can (no audio track)."""
    from modeling_affectverse.media_affectverse import MediaError, probe_media

    name = os.path.basename(path)
    try:
        info = probe_media(path)
    except MediaError as err:
        raise InputProblem(f"{name} is not a video this app can read: {err}") from None
    if not info.has_video:
        raise InputProblem(f"{name} has no video stream: upload a video file (mp4, webm, mov, ...).")
    duration = info.duration or 0.0
    if duration > max_seconds:
        raise InputProblem(f"{name} lasts {duration:.1f} s; this demo takes clips of up to {max_seconds:g} s.")
    return [] if info.has_audio else [f"{name} has no audio track: the answer uses the frames (and the subtitle) only."]


def parse_labels(text: str | None, task: str) -> list[str] | None:
    if task != "emotion":
        return None
    labels = [label.strip() for label in (text or "").split(",") if label.strip()]
    if not labels:
        raise InputProblem("The label set is empty: list the emotions to choose from, separated by commas.")
    if len(set(labels)) != len(labels):
        raise InputProblem(f"The label set repeats a label: {', '.join(labels)}.")
    return labels


# -- rendering ----------------------------------------------------------------------------------------------------
def probabilities_html(label: str, scores: dict[str, float] | None, generated: str | None) -> str:
    rows = "".join(
        f'<tr><td class="label">{html.escape(name)}</td><td class="prob">{p:.4f}</td></tr>'
        for name, p in sorted((scores or {}).items(), key=lambda item: item[1], reverse=True)
    )
    table = f'<table id="probabilities"><tr><th>label</th><th>probability</th></tr>{rows}</table>' if scores else ""
    prediction = f'<p>Prediction: <b id="predicted-label">{html.escape(label or "")}</b></p>'
    answer = f'<p>Generated answer: <span id="generated-text">{html.escape(generated or "")}</span></p>'
    return f'<div id="result">{prediction}{table}{answer}</div>'


def trajectory_plot(trajectory: dict) -> np.ndarray:
    """Each label's probability against the observed fraction, as an RGB image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fractions = [100 * f for f in trajectory["fractions"]]
    probabilities = np.asarray(trajectory["probabilities"])
    figure, axis = plt.subplots(figsize=(7, 3.6), dpi=100)
    for column, label in enumerate(trajectory["labels"]):
        axis.plot(fractions, probabilities[:, column], marker="o", label=label)
    axis.set_xlabel("observed part of the clip (%)")
    axis.set_ylabel("probability")
    axis.set_ylim(0, 1)
    axis.set_xticks(fractions)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", fontsize=8, ncols=3)
    axis.set_title("Belief trajectory")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def analyse(recognizer, clips, max_seconds, upload, picked, subtitle, task, labels_text):
    """One request: `(message markdown, result html, trajectory image or None, frame gallery)`. Problems with the
    input come back as the message, never as an exception."""
    try:
        if task not in TASKS:
            raise InputProblem(f"Unknown task {task!r}: choose one of {', '.join(TASKS)}.")
        path = resolve_clip(upload, picked, clips)
        notes = check_clip(path, max_seconds)
        labels = parse_labels(labels_text, task)
        clip = {"video": path, "subtitle": (subtitle or "").strip() or None}
        options = {"task": task, "label_set": labels} if labels else {"task": task}
        if task == "open_vocabulary":
            answer = recognizer(clip, return_details=True, **options)
        else:
            answer = recognizer(clip, trajectory=True, **options)
    except InputProblem as problem:
        return f"**{problem}**", "", None, []
    except ValueError as err:  # what the pipeline refuses (a clip it cannot decode, ...)
        return f"**The clip could not be analysed: {err}**", "", None, []
    result = probabilities_html(answer["label"], answer["scores"], answer["generated_text"])
    trajectory = answer.get("trajectory")
    if trajectory is None:
        return "\n\n".join(notes), result, None, []
    gallery = [
        (frame, f"{100 * fraction:.0f}%")
        for frame, fraction in zip(trajectory["frames"], trajectory["fractions"], strict=True)
        if frame is not None
    ]
    return "\n\n".join(notes), result, trajectory_plot(trajectory), gallery


# -- page ---------------------------------------------------------------------------------------------------------
def build_app(recognizer, description: str, clips: dict[str, str], max_seconds: float) -> gr.Blocks:
    with gr.Blocks(title="AffectVerse") as app:
        gr.Markdown(f"# AffectVerse: emotion, and how the belief forms\nModel: {description}.")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Upload a video", type="filepath", elem_id="upload")
                picked = gr.Dropdown(
                    choices=list(clips),
                    value=None,
                    allow_custom_value=True,
                    elem_id="demo-clip",
                    label="...or pick a demo clip",
                )
                subtitle = gr.Textbox(label="Subtitle (optional)", elem_id="subtitle")
                task = gr.Dropdown(choices=TASKS, value="emotion", label="Task", elem_id="task")
                labels = gr.Textbox(value=", ".join(MER_LABELS), label="Label set (emotion)", elem_id="labels")
                run = gr.Button("Analyse", variant="primary", elem_id="analyse")
            with gr.Column():
                message = gr.Markdown(elem_id="message")
                result = gr.HTML(elem_id="result-box")
                plot = gr.Image(label="Belief trajectory", elem_id="trajectory-plot", interactive=False)
                frames = gr.Gallery(
                    label="Last observed frame at each fraction", elem_id="frames", columns=5, height=260
                )

        def handler(upload, picked, subtitle, task, labels, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
            progress(0, desc="decoding the clip")
            return analyse(recognizer, clips, max_seconds, upload, picked, subtitle, task, labels)

        run.click(
            handler, [upload, picked, subtitle, task, labels], [message, result, plot, frames], api_name="analyse"
        )
    return app


def build_parser() -> argparse.ArgumentParser:
    """The command line this script takes (the README's commands are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Hub id, model folder, adapter folder or 'tiny'")
    parser.add_argument("--clips", default=None, help="folder of demo clips (default: data/demo/clips)")
    parser.add_argument(
        "--max-seconds", type=float, default=float(os.environ.get("AFFECTVERSE_MAX_SECONDS", DEFAULT_MAX_SECONDS))
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 7860)))
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    recognizer, description = build_recognizer(args.model)
    clips = demo_clips(args.clips)
    app = build_app(recognizer, description, clips, args.max_seconds)
    app.queue().launch(server_name=args.host, server_port=args.port, show_error=False)


if __name__ == "__main__":
    main()
