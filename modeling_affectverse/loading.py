"""One way to turn a name into `(model, processor)`: every script, the Hub export, the Space and the benchmarks use it.

A name is one of:
- `tiny`: the embedded random default, always built from seed 0 (an adapter's base must be rebuilt identically);
- an adapter folder written by `training/sft.py` (LoRA + EWM + the belief row), put on the base it records;
- an AffectVerse checkpoint (folder or Hub id);
- a Qwen2.5-Omni checkpoint, full or thinker-only, given a new EWM (`from_qwen_omni`).

Folders and Hub ids are resolved through the Hub cache, offline mode honoured. Not part of the remote code: the Hub
copy of the model needs only `AutoModel.from_pretrained`.
"""

from __future__ import annotations

import json
import os
import re

from peft import PeftModel
from transformers import Qwen2_5OmniProcessor

from .modeling_affectverse import AffectVerseForConditionalGeneration, checkpoint_config
from .processing_affectverse import AffectVerseProcessor
from .tiny import build_tiny_model

# written by training/sft.py beside the adapter: the EWM config overrides the base was built with (ablation switches)
EWM_CONFIG_FILE = "ewm_config.json"
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def hub_id(value: str | None) -> str | None:
    """`value` when it is a Hub repository id (`org/name`, not a local path), else None."""
    if not value or os.path.exists(value) or not HUB_ID.match(value):
        return None
    return value


def is_adapter_folder(name: str | os.PathLike) -> bool:
    """Whether `name` is a folder holding a PEFT adapter (`adapter_config.json`)."""
    return os.path.isfile(os.path.join(os.fspath(name), "adapter_config.json"))


def load(
    name: str | os.PathLike,
    ewm_config: dict | None = None,
    seed: int | None = None,
    dtype=None,
    base: str | None = None,
):
    """`(model, processor)` for `name` (see the module's docstring); an adapter folder gives a `PeftModel`.

    `ewm_config` overrides EWM config fields of a base. A new EWM (tiny, Qwen2.5-Omni) is drawn from `seed` when
    given; an AffectVerse checkpoint's EWM is kept. An adapter folder's base is `base`, else the one its
    `adapter_config.json` records, else `tiny`, built with the overrides recorded in `ewm_config.json` (so an
    ablation variant's adapter meets the architecture it was trained with); the processor saved in the folder is
    used when there is one. The processor places belief placeholders as the model expects, and generation stops at
    `<|im_end|>`. The model is returned as built (train mode): callers that predict call `.eval()`.
    """
    name = os.fspath(name)
    if is_adapter_folder(name):
        return _load_adapter(name, base)
    overrides = dict(ewm_config or {})
    new_ewm = True
    if name == "tiny":
        # PEFT records no base name for tiny (a name would make PEFT look it up on the Hub when saving); a missing
        # base name is read as tiny.
        model, processor = build_tiny_model(seed=0, **overrides)
    elif checkpoint_config(name).get("model_type") == "affectverse":
        processor = AffectVerseProcessor.from_pretrained(name)
        model = AffectVerseForConditionalGeneration.from_pretrained(name, dtype=dtype, **overrides)
        new_ewm = False
    else:
        processor = AffectVerseProcessor.from_omni_processor(Qwen2_5OmniProcessor.from_pretrained(name))
        model = AffectVerseForConditionalGeneration.from_qwen_omni(
            name, belief_token_id=processor.belief_token_id, dtype=dtype, **overrides
        )
    if new_ewm and seed is not None:  # a run draws its EWM from its own seed; without one the built model is kept
        model.init_ewm(seed)
    processor.follow_model_config(model.config)
    model.configure_generation(processor.tokenizer)
    return model, processor


def _load_adapter(folder: str, base: str | None):
    """`(PeftModel, processor)` of an adapter folder on the base it was trained on (see `load`)."""
    recorded = json.load(open(os.path.join(folder, "adapter_config.json"))).get("base_model_name_or_path")
    overrides_path = os.path.join(folder, EWM_CONFIG_FILE)
    overrides = json.load(open(overrides_path)) if os.path.isfile(overrides_path) else {}
    model, processor = load(base or recorded or "tiny", overrides)
    if os.path.isfile(os.path.join(folder, "processor_config.json")):
        processor = AffectVerseProcessor.from_pretrained(folder).follow_model_config(model.config)
    return PeftModel.from_pretrained(model, folder), processor


__all__ = ["EWM_CONFIG_FILE", "hub_id", "is_adapter_folder", "load"]
