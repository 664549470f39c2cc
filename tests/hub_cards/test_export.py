"""Hub export of a demo-trained tiny model: remote code in a process without the package, card, handler, errors."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from peft import PeftModel

import hub_cards.export as exporter
from hub_cards.push import main as push_main
from modeling_affectverse.media_affectverse import decode_clip
from modeling_affectverse.pipeline_affectverse import AffectVerseEmotionPipeline
from modeling_affectverse.processing_affectverse import task_question
from modeling_affectverse.tiny import MER_LABELS, build_tiny_model
from tests.training.conftest import COMMON, RECIPE, parse_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPO_ID = "org/affectverse-demo"
BLOCK = "import sys; sys.modules['modeling_affectverse'] = None  # the package is not importable here\n"


@pytest.fixture(scope="module")
def exported(demo_manifest, tmp_path_factory):
    """A 3-step demo training run, a benchmark results.json, and the export of both."""
    import metrics.evaluation as runner
    from training.sft import main

    work = tmp_path_factory.mktemp("hub")
    adapter = str(work / "adapter")
    main(*parse_recipe("--train_manifest", demo_manifest, "--output_dir", adapter, "--max_steps", "3"))
    runner.main(["--model", adapter, "--manifest", demo_manifest, "--output", str(work / "bench")])
    folder = exporter.export(str(work / "repo"), REPO_ID, adapter=adapter, results_path=str(work / "bench" /
                             "results.json"), max_shard_size="300KB")  # fmt: skip
    clip = os.path.join(os.path.dirname(demo_manifest), "clips", "demo_0005.mp4")
    shutil.copy(clip, work / "clip.mp4")
    return {"work": work, "adapter": adapter, "folder": folder, "clip": str(work / "clip.mp4"),
            "results": json.loads((work / "bench" / "results.json").read_text())}  # fmt: skip


def run_python(code: str, cwd, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_MODULES_CACHE": os.path.join(str(cwd), "modules"), **(env_extra or {})}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def test_folder_layout(exported):
    names = set(os.listdir(exported["folder"]))
    for name in (
        "config.json",
        "generation_config.json",
        "README.md",
        "handler.py",
        "tokenizer.json",
        "processor_config.json",
        "chat_template.jinja",
        "model.safetensors.index.json",
        "modeling_affectverse.py",
        "configuration_affectverse.py",
        "ewm.py",
        "processing_affectverse.py",
        "pipeline_affectverse.py",
        "media_affectverse.py",
        "scoring_affectverse.py",
        "emotion_lexicon.py",
    ):
        assert name in names, name  # fmt: skip
    assert len([n for n in names if re.match(r"model-\d+-of-\d+\.safetensors", n)]) > 1  # sharded
    config = json.loads(open(os.path.join(exported["folder"], "config.json")).read())
    assert config["auto_map"]["AutoModel"] == "modeling_affectverse.AffectVerseForConditionalGeneration"
    assert list(config["custom_pipelines"]) == ["video-classification"]  # the task the card and the widget name
    from transformers.pipelines import PIPELINE_REGISTRY

    built_in = str(PIPELINE_REGISTRY.supported_tasks["video-classification"]["impl"])  # restored after the export
    assert built_in.endswith("video_classification.VideoClassificationPipeline"), built_in
    assert config["custom_pipelines"]["video-classification"]["impl"].startswith("pipeline_affectverse.")
    generation = json.loads(open(os.path.join(exported["folder"], "generation_config.json")).read())
    assert config["belief_token_id"] in generation["suppress_tokens"]
    assert not [n for n in os.listdir(exported["work"]) if n.startswith(".export-")]  # no staging left


def test_fresh_process_without_the_package_matches_in_process(exported, processor):
    work, folder = exported["work"], exported["folder"]
    media = decode_clip(exported["clip"], exported["clip"], size=processor.frame_size)
    np.savez(work / "clip.npz", frames=media.video.frames, wave=media.audio.waveform, fps=media.video.fps)
    question = task_question("emotion", list(MER_LABELS))
    code = (
        BLOCK
        + f"""
import json, warnings, numpy as np, torch
warnings.simplefilter("ignore")
from transformers import AutoModel, AutoProcessor, pipeline
folder = {folder!r}
model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
clip = np.load("clip.npz")
text = processor.build_prompt({question!r}, subtitle="hi", video=True)
inputs = processor(text=[text], videos=[clip["frames"]], audio=[clip["wave"]], load_audio_from_video=True,
                   audio_from_video_indices=[0], videos_kwargs={{"fps": [float(clip["fps"])]}}, return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs, use_audio_in_video=True).logits
torch.save({{"input_ids": inputs["input_ids"], "logits": logits}}, "remote.pt")
result = pipeline(model=folder, trust_remote_code=True)({{"video": "clip.mp4", "subtitle": "hi"}},
                                                        return_details=True)
classifier = pipeline("video-classification", model=folder, trust_remote_code=True)
widget = classifier(open("clip.mp4", "rb").read())  # the raw bytes the Hub widget sends
import sys
sys.path.insert(0, folder)
from handler import EndpointHandler
endpoint = EndpointHandler(folder)(open("clip.mp4", "rb").read())  # Inference Endpoints: the same bytes
json.dump({{"details": result, "widget": widget, "endpoint": endpoint, "class": type(classifier).__name__}},
          open("remote.json", "w"))
"""
    )
    run_python(code, work)
    remote = torch.load(work / "remote.pt")
    model = PeftModel.from_pretrained(build_tiny_model(seed=0)[0], exported["adapter"]).eval()
    text = processor.build_prompt(question, subtitle="hi", video=True)
    inputs = processor(text=[text], videos=[media.video.frames], audio=[media.audio.waveform],
                       load_audio_from_video=True, audio_from_video_indices=[0],
                       videos_kwargs={"fps": [media.video.fps]}, return_tensors="pt")  # fmt: skip
    assert torch.equal(remote["input_ids"], inputs["input_ids"])
    with torch.no_grad():
        local = model(**inputs, use_audio_in_video=True).logits
    torch.testing.assert_close(remote["logits"], local, rtol=1e-4, atol=1e-4)
    local_pipeline = AffectVerseEmotionPipeline(model=model, processor=processor)
    expected = local_pipeline({"video": exported["clip"], "subtitle": "hi"}, return_details=True)
    remote_out = json.loads((work / "remote.json").read_text())
    result = remote_out["details"]
    assert result["label"] == expected["label"] and result["generated_text"] == expected["generated_text"]
    assert result["scores"] == pytest.approx(expected["scores"], abs=1e-4)
    # pipeline("video-classification", ...) loads this pipeline and answers the widget's bytes in its contract
    assert remote_out["class"] == "AffectVerseEmotionPipeline"
    widget, local = remote_out["widget"], local_pipeline(exported["clip"])
    assert [item["label"] for item in widget] == [item["label"] for item in local] and len(widget) == 5
    assert [item["score"] for item in widget] == pytest.approx([item["score"] for item in local], abs=1e-4)
    assert [item["score"] for item in widget] == sorted((item["score"] for item in widget), reverse=True)
    assert remote_out["endpoint"] == widget  # the handler answers the widget's bytes the same way


def test_card_loads_has_every_metric_and_its_snippets_run(exported, demo_manifest):
    folder, work = exported["folder"], exported["work"]
    card = ModelCard.load(os.path.join(folder, "README.md"))
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "video-classification"
    # metadata from what was trained: the tiny base and the demo set are not Hub repositories, no clip was shipped
    assert card.data.base_model is None and card.data.datasets is None and card.data.get("widget") is None
    index = card.data.to_dict()["model-index"]
    listed = {(r["dataset"]["name"], r["dataset"]["config"], m["type"])
              for entry in index for r in entry["results"] for m in r["metrics"]}  # fmt: skip
    for dataset, settings in exported["results"].items():
        for setting, ratios in settings.items():
            for ratio, scores in ratios.items():
                for name, value in scores.items():
                    if name in exporter.COUNTS or name.startswith("skipped_") or value is None:
                        continue
                    assert (dataset, f"{exporter.MODALITIES[setting]}, keep ratio {ratio}", name) in listed, name
    text = open(os.path.join(folder, "README.md")).read()
    python_snippets = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    bash_snippets = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert len(python_snippets) == 2 and len(bash_snippets) == 1
    for snippet in python_snippets:
        run_python(BLOCK + snippet.replace(REPO_ID, folder), work)
    command = bash_snippet_args(bash_snippets[0].replace(REPO_ID, folder))
    overrides = ["--train_manifest", demo_manifest, "--output_dir", str(work / "tuned"), "--max_steps", "1", *COMMON]
    result = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1",
                             "--mixed_precision", "no", "--dynamo_backend", "no", *command, *overrides],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "adapter (LoRA + EWM) saved to" in result.stdout


def test_card_metadata_is_what_was_given_or_trained(exported, tmp_path):
    requirements = open(os.path.join(exported["folder"], "requirements.txt")).read().split()
    assert any(r.startswith("av") for r in requirements) and "torchaudio" in requirements  # what remote code imports
    folder = exporter.export(str(tmp_path / "repo"), REPO_ID, adapter=exported["adapter"], example=exported["clip"],
                             base_model_id="Qwen/Qwen2.5-Omni-7B", dataset_ids=["org/mer2023"])  # fmt: skip
    card = ModelCard.load(os.path.join(folder, "README.md"))
    assert card.data.base_model == "Qwen/Qwen2.5-Omni-7B" and card.data.datasets == ["org/mer2023"]
    assert card.data.get("widget")[0]["src"] == f"https://huggingface.co/{REPO_ID}/resolve/main/example.mp4"
    assert open(os.path.join(folder, "example.mp4"), "rb").read() == open(exported["clip"], "rb").read()
    with pytest.raises(exporter.ExportError, match="'MER 2023' is not a Hub repository id"):
        exporter.export(str(tmp_path / "bad"), REPO_ID, adapter=exported["adapter"], dataset_ids=["MER 2023"])
    assert not (tmp_path / "bad").exists()
    # the adapter folder's own card and record, written by sft.py instead of TRL's
    info = json.load(open(os.path.join(exported["adapter"], "training_info.json")))
    assert info["base"] == "tiny" and info["datasets"] == ["demo"] and info["optimizer_steps"] == 3
    adapter_card = open(os.path.join(exported["adapter"], "README.md")).read()
    assert "loading import load" in adapter_card and "AutoPeftModel` cannot rebuild it" in adapter_card


def bash_snippet_args(snippet: str) -> list[str]:
    words = snippet.replace("\\\n", " ").split()
    assert words[:2] == ["accelerate", "launch"] and words[3:5] == ["--config", "configuration/recipes/demo.yaml"]
    assert os.path.join(ROOT, words[4]) == RECIPE
    return words[2:]


def test_handler_answers_a_request(exported):
    sys.path.insert(0, exported["folder"])
    try:
        from handler import EndpointHandler
    finally:
        sys.path.pop(0)
    handler = EndpointHandler(exported["folder"])
    raw = open(exported["clip"], "rb").read()
    clip = base64.b64encode(raw).decode()
    answer = handler({"inputs": {"video": clip, "subtitle": "hi"}, "parameters": {"task": "sentiment"}})
    assert {item["label"] for item in answer} == {"positive", "negative"}
    assert sum(item["score"] for item in answer) == pytest.approx(1.0)
    widget = handler({"inputs": raw})  # raw bytes, as the widget sends them: the video-classification list
    assert len(widget) == 5 and all(item["label"] in MER_LABELS for item in widget)
    details = handler({"inputs": raw, "parameters": {"return_details": "true", "top_k": "2"}})
    assert details["label"] == widget[0]["label"] and "generated_text" in details
    with pytest.raises(ValueError, match="inputs.video: URLs are not fetched"):
        handler({"inputs": {"video": "https://example.com/clip.mp4"}})
    # string parameters are cast; unknown or malformed ones are errors, not ignored
    answer = handler({"inputs": raw, "parameters": {"max_new_tokens": "3", "label_set": "happy, sad"}})
    assert {item["label"] for item in answer} == {"happy", "sad"}
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['vidoe'\]"):
        handler({"inputs": raw, "parameters": {"vidoe": 1}})
    with pytest.raises(ValueError, match="max_new_tokens must be an integer"):
        handler({"inputs": raw, "parameters": {"max_new_tokens": "three"}})


def refusal(handler, value) -> str:
    with pytest.raises(ValueError) as info:
        handler({"inputs": {"video": value}})
    return str(info.value)


def test_handler_reads_no_server_path_and_is_no_existence_oracle(exported, tmp_path):
    sys.path.insert(0, exported["folder"])
    try:
        from handler import EndpointHandler
    finally:
        sys.path.pop(0)
    handler = EndpointHandler(exported["folder"])
    existing, missing = exported["clip"], str(tmp_path / "no-such.mp4")
    assert refusal(handler, existing) == refusal(handler, missing) == refusal(handler, "/etc/passwd")
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(exported["clip"], media / "clip.mp4")
    scoped = EndpointHandler(exported["folder"], media_root=str(media))
    assert scoped({"inputs": {"video": "clip.mp4"}})[0]["label"] in MER_LABELS  # inside the configured folder: read
    escaping = os.path.relpath(exported["clip"], media)  # ../../... to a file that exists
    assert refusal(scoped, escaping) == refusal(scoped, "missing.mp4") == refusal(scoped, existing)


def test_pipeline_refuses_unknown_options_and_bad_label_sets(exported):
    from modeling_affectverse import AffectVerseForConditionalGeneration, AffectVerseProcessor

    model = AffectVerseForConditionalGeneration.from_pretrained(exported["folder"]).eval()
    recognizer = AffectVerseEmotionPipeline(model=model, processor=AffectVerseProcessor.from_pretrained(
        exported["folder"]))  # fmt: skip
    raw = open(exported["clip"], "rb").read()
    assert recognizer(raw) == recognizer(exported["clip"])  # bytes and a path: the same clip
    assert len(recognizer(exported["clip"], top_k=2)) == 2
    assert recognizer([exported["clip"], raw], batch_size=2) == [recognizer(raw)] * 2  # batch_size accepted
    with pytest.raises(ValueError, match="unknown parameter"):
        recognizer(exported["clip"], vidoe="x")
    for label_set, message in (([], "non-empty list"), (["happy", "happy"], "repeats a label")):
        with pytest.raises(ValueError, match=message):
            recognizer(exported["clip"], label_set=label_set)
    with pytest.raises(ValueError, match="unknown input field"):
        recognizer({"vidoe": exported["clip"]})
    # the exported generation config stops at the end of the turn
    from tests.modeling_affectverse.test_hardening import force_end_of_turn, greedy

    end = force_end_of_turn(model, recognizer.processor.tokenizer)
    assert greedy(model, recognizer.preprocess(exported["clip"])["generation"]).tolist() == [[end]]


def test_push_dry_run_lists_files_and_sizes(exported, capsys):
    assert push_main(["--folder", exported["folder"], "--repo-id", REPO_ID, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "config.json" in out and "dry run: nothing uploaded" in out
    files = [os.path.join(root, n) for root, _, names in os.walk(exported["folder"]) for n in names]
    total = sum(os.path.getsize(path) for path in files)  # the space/ folder's files included
    assert f"{total:,}" in out and "space/app.py" in out


def test_export_errors_leave_nothing_behind(exported, tmp_path, monkeypatch):
    adapter = exported["adapter"]
    target = tmp_path / "out"
    no_weights = tmp_path / "no-weights"
    shutil.copytree(adapter, no_weights)
    os.remove(no_weights / "adapter_model.safetensors")
    with pytest.raises(exporter.ExportError, match="no-weights/adapter_model.safetensors: missing"):
        exporter.export(str(target), REPO_ID, adapter=str(no_weights))
    (tmp_path / "empty-checkpoint").mkdir()
    with pytest.raises(exporter.ExportError, match="no weights file"):
        exporter.export(str(target), REPO_ID, checkpoint=str(tmp_path / "empty-checkpoint"))
    bad_results = tmp_path / "results.json"
    bad_results.write_text(json.dumps({"demo": {"AVT": {"1": {"task": "emotion", "acc2_magic": 0.5}}}}))
    with pytest.raises(exporter.ExportError, match="unknown metric 'acc2_magic'"):
        exporter.export(str(target), REPO_ID, adapter=adapter, results_path=str(bad_results))
    other_base = tmp_path / "other-base"
    model, processor = build_tiny_model(seed=0, ewm_working_size=16)
    model.save_pretrained(other_base)
    processor.save_pretrained(other_base)
    with pytest.raises(exporter.ExportError, match="does not fit the base"):
        exporter.export(str(target), REPO_ID, adapter=adapter, base=str(other_base))

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")  # a failure half-way through writing

    monkeypatch.setattr(exporter, "render_card", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        exporter.export(str(target), REPO_ID, adapter=adapter)
    assert not target.exists() and not [n for n in os.listdir(tmp_path) if n.startswith(".export-")]


def test_the_space_is_exported_naming_this_model(exported):
    """`space/` is a Space repository: the Gradio app, its requirements, and a README whose YAML names the exported
    model, which the app then loads by default."""
    from huggingface_hub import metadata_load

    space = os.path.join(exported["folder"], "space")
    assert sorted(os.listdir(space)) == ["README.md", "app.py", "requirements.txt"]
    metadata = metadata_load(os.path.join(space, "README.md"))
    assert metadata["sdk"] == "gradio" and metadata["app_file"] == "app.py" and metadata["models"] == [REPO_ID]
    shown = run_python(f"import sys; sys.path.insert(0, {space!r}); import app; print(app.space_model())", space)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip().splitlines()[-1] == REPO_ID


def test_handler_answers_audio_too_short_to_count(exported):
    """800 samples of audio (one audio token): the exported remote code's processor leaves it out of the belief
    tokens, as the model's EWM does, and the endpoint answers (it used to fail on the placeholder count)."""
    import io
    import wave

    sys.path.insert(0, exported["folder"])
    try:
        from handler import EndpointHandler
    finally:
        sys.path.pop(0)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes((np.sin(np.arange(800) / 5) * 8000).astype(np.int16).tobytes())
    short = base64.b64encode(buffer.getvalue()).decode()
    with pytest.warns(UserWarning, match="counts as absent for the belief tokens"):
        answer = EndpointHandler(exported["folder"])({"inputs": {"audio": short}})
    assert len(answer) == 5 and all(item["label"] in MER_LABELS for item in answer)
