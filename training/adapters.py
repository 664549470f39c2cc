"""LoRA + EWM adapters: the PEFT configuration of DESIGN §3 / §7, loading one back, and the merged export.

The adapter folder `save_pretrained` writes holds the LoRA weights of the language model's attention, the whole
Emotion World Module (`modules_to_save=["ewm"]`: a module merely left trainable would not be saved) and the
`<|belief|>` embedding row (`trainable_token_indices`), so it rebuilds the trained model on an unchanged base.
"""

from __future__ import annotations

import copy
import os

from peft import LoraConfig, PeftModel

from modeling_affectverse import AffectVerseForConditionalGeneration

# q/k/v/o of the language model's decoder layers ONLY: the audio encoder has modules of the same names (DESIGN §3)
LLM_ATTENTION = r".*language_model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj"


def affectverse_lora_config(
    belief_token_id: int,
    r: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.05,
    target_modules: str | list[str] | None = None,
    modules_to_save: list[str] | None = None,
) -> LoraConfig:
    """The paper's LoRA (r=16, alpha=32, dropout 0.05 on the LLM's q/k/v/o) with the EWM and the belief row saved.

    `target_modules` replaces the LLM regex; a one-element list is read as a regex too (YAML recipes give lists).
    """
    if isinstance(target_modules, list) and len(target_modules) == 1:
        target_modules = target_modules[0]
    return LoraConfig(
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules or LLM_ATTENTION,
        modules_to_save=["ewm", *(modules_to_save or [])],
        trainable_token_indices={"embed_tokens": [belief_token_id]},
        bias="none",
    )


def load_adapter(base: AffectVerseForConditionalGeneration, folder: str | os.PathLike) -> PeftModel:
    """Put a saved adapter (LoRA + EWM + belief row) on a base model. The base must be the one trained on."""
    return PeftModel.from_pretrained(base, os.fspath(folder))


def export_merged(model: PeftModel, processor, folder: str | os.PathLike) -> str:
    """Merge LoRA into the weights and save a full AffectVerse checkpoint (EWM included) with its processor.

    The folder loads with `AffectVerseForConditionalGeneration.from_pretrained` or, with the remote code,
    `AutoModel.from_pretrained(folder, trust_remote_code=True)`. `model` is left unmerged.
    """
    folder = os.fspath(folder)
    merged = copy.deepcopy(model).merge_and_unload()  # a copy: `model` stays an adapter model
    merged.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


__all__ = ["LLM_ATTENTION", "affectverse_lora_config", "export_merged", "load_adapter"]
