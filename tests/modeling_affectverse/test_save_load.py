"""save_pretrained / from_pretrained, Hub remote code in a clean process, Qwen2.5-Omni checkpoints."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    Qwen2_5OmniConfig,
    Qwen2_5OmniForConditionalGeneration,
    Qwen2_5OmniThinkerForConditionalGeneration,
)

from modeling_affectverse import AffectVerseForConditionalGeneration


def _logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


def test_save_and_from_pretrained_give_equal_outputs(model, make_inputs, tmp_path):
    inputs = make_inputs(["video+audio"])
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_affectverse.AffectVerseConfig",
        "AutoModel": "modeling_affectverse.AffectVerseForConditionalGeneration",
        "AutoModelForCausalLM": "modeling_affectverse.AffectVerseForConditionalGeneration",
    }
    for name in ("modeling_affectverse.py", "configuration_affectverse.py", "ewm.py"):
        assert (tmp_path / name).exists()
    expected = _logits(model, inputs)
    for loader in (AffectVerseForConditionalGeneration, AutoModel, AutoModelForCausalLM):
        loaded = loader.from_pretrained(tmp_path).eval()
        assert isinstance(loaded, AffectVerseForConditionalGeneration)
        torch.testing.assert_close(_logits(loaded, inputs), expected, rtol=0, atol=1e-6)


REMOTE = textwrap.dedent(
    """
    import sys

    class Block:  # the installed package must not be what loads: hide it, whatever the install
        def find_spec(self, name, path=None, target=None):
            if name == "modeling_affectverse" or name.startswith("modeling_affectverse."):
                raise ImportError("blocked: " + name)

    sys.meta_path.insert(0, Block())
    sys.path = [p for p in sys.path if p not in ("", {repo!r})]
    try:
        import modeling_affectverse  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("modeling_affectverse is importable: the check would prove nothing")
    import torch
    from transformers import AutoModel, AutoProcessor
    model = AutoModel.from_pretrained({folder!r}, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    processor = AutoProcessor.from_pretrained({folder!r}, trust_remote_code=True)
    assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
    prompt = processor.build_prompt("q?", video=True)
    ids = processor(text=[prompt], videos=[torch.zeros(6, 56, 56, 3, dtype=torch.uint8).numpy()],
                    return_tensors="pt")["input_ids"]
    torch.save(ids, {out!r} + ".ids")
    inputs = torch.load({inputs!r})
    with torch.no_grad():
        torch.save(model(**inputs).logits, {out!r})
    """
)


def test_remote_code_loads_in_a_clean_process(model, make_inputs, tmp_path, processor):
    inputs = make_inputs(["audio-in-video"])
    folder, out = tmp_path / "export", tmp_path / "logits.pt"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    torch.save(dict(inputs), tmp_path / "inputs.pt")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = REMOTE.format(repo=repo, folder=str(folder), inputs=str(tmp_path / "inputs.pt"), out=str(out))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-I", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    torch.testing.assert_close(torch.load(out), _logits(model, inputs), rtol=0, atol=1e-6)
    frames = torch.zeros(6, 56, 56, 3, dtype=torch.uint8).numpy()
    expected_ids = processor(text=[processor.build_prompt("q?", video=True)], videos=[frames], return_tensors="pt")
    assert torch.equal(torch.load(str(out) + ".ids"), expected_ids["input_ids"])


def _assert_backbone_equal(loaded, source_state):
    ours = loaded.state_dict()
    for key, value in source_state.items():
        assert torch.equal(ours[key], value), key


def test_from_full_qwen_omni_checkpoint_initialises_only_ewm(model, make_inputs, tmp_path, processor):
    backbone = model.config.to_thinker_config()
    full_config = Qwen2_5OmniConfig(thinker_config=backbone.to_dict(), enable_audio_output=False)
    torch.manual_seed(3)
    full = Qwen2_5OmniForConditionalGeneration(full_config).eval()
    full.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert "thinker_config" in saved
    # a real Omni checkpoint also holds the speech generator's weights: add some
    weights = load_file(tmp_path / "model.safetensors")
    assert any(k.startswith("thinker.") for k in weights)
    weights["talker.model.embed_tokens.weight"] = torch.zeros(4, 4)
    weights["token2wav.code_embedding.weight"] = torch.zeros(4, 4)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    loaded = AffectVerseForConditionalGeneration.from_qwen_omni(tmp_path, belief_token_id=processor.belief_token_id)
    missing = set(loaded.loading_info["missing_keys"])
    assert missing == {k for k in loaded.state_dict() if k.startswith("ewm.")}
    _assert_backbone_equal(loaded, full.thinker.state_dict())
    assert loaded.config.get_text_config().hidden_size == backbone.get_text_config().hidden_size
    assert loaded.config.belief_token_id == processor.belief_token_id


def test_from_thinker_only_checkpoint(model, make_inputs, tmp_path, processor):
    torch.manual_seed(4)
    thinker = Qwen2_5OmniThinkerForConditionalGeneration(model.config.to_thinker_config())
    thinker.save_pretrained(tmp_path)
    loaded = AffectVerseForConditionalGeneration.from_qwen_omni(tmp_path, belief_token_id=processor.belief_token_id)
    assert set(loaded.loading_info["missing_keys"]) == {k for k in loaded.state_dict() if k.startswith("ewm.")}
    _assert_backbone_equal(loaded, thinker.state_dict())
    inputs = make_inputs(["video+audio"], belief_placeholders=False)
    torch.testing.assert_close(_logits(loaded.eval(), inputs), _logits(thinker.eval(), inputs), rtol=0, atol=1e-6)


def test_checkpoint_missing_backbone_weights_raises(model, tmp_path, processor):
    torch.manual_seed(5)
    thinker = Qwen2_5OmniThinkerForConditionalGeneration(model.config.to_thinker_config())
    state = {k: v for k, v in thinker.state_dict().items() if "layers.1." not in k}
    thinker.save_pretrained(tmp_path, state_dict=state)
    with pytest.raises(ValueError, match="left random"):
        AffectVerseForConditionalGeneration.from_qwen_omni(tmp_path)
