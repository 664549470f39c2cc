"""LoRA + EWM adapters: the PEFT configuration of docs/architecture.md §3 / §7, loading one back, and the merged export.

The adapter folder `save_pretrained` writes holds the LoRA weights of the language model's attention, the whole
Emotion World Module (`modules_to_save=["ewm"]`: a module merely left trainable would not be saved) and the
`<|belief|>` embedding row (`trainable_token_indices`), so it rebuilds the trained model on an unchanged base.
"""

from __future__ import annotations

import json
import os

from peft import LoraConfig

from modeling_affectverse.loading import hub_id, load

ADAPTER_CARD = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hub_cards", "adapter_template.md"
)
# q/k/v/o of the language model's decoder layers ONLY: the audio encoder has modules of the same names
# (docs/architecture.md §3)
LLM_ATTENTION = r".*language_model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj"


def affectverse_lora_config(
    belief_token_id: int,
    r: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.05,
    target_modules: str | list[str] | None = None,
    modules_to_save: list[str] | None = None,
    with_ewm: bool = True,
    with_prefusion: bool = False,
) -> LoraConfig:
    """The paper's LoRA (r=16, alpha=32, dropout 0.05 on the LLM's q/k/v/o) with the EWM and the belief row saved.

    `target_modules` replaces the LLM regex; a one-element list is read as a regex too (YAML recipes give lists).
    `with_ewm=False` (a model without EWM: `ewm_belief_construction="none"`) saves neither: plain thinker LoRA.
    `with_prefusion` trains and saves the Conv-Attention pre-fusion in full too (`ewm_prefusion`).
    """
    if isinstance(target_modules, list) and len(target_modules) == 1:
        target_modules = target_modules[0]
    return LoraConfig(
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules or LLM_ATTENTION,
        modules_to_save=[
            *(["ewm"] if with_ewm else []),
            *(["prefusion"] if with_prefusion else []),
            *(modules_to_save or []),
        ]
        or None,
        trainable_token_indices={"embed_tokens": [belief_token_id]} if with_ewm else None,
        bias="none",
    )


def write_adapter_card(
    folder: str,
    base: str,
    lora_targets,
    train_manifest: str,
    datasets: list[str],
    train_rows: int,
    steps: int,
    seed: int,
    ewm_config: dict | None,
) -> None:
    """`training_info.json` (what was trained: base, manifest, datasets, steps, seed; the Hub export reads it) and
    the adapter folder's `README.md`, replacing the card TRL writes (its base model, snippet and loading route do
    not fit an AffectVerse adapter)."""
    from huggingface_hub import ModelCard, ModelCardData

    info = {
        "base": base,
        "train_manifest": os.path.abspath(train_manifest),
        "datasets": datasets,
        "train_rows": train_rows,
        "optimizer_steps": steps,
        "seed": seed,
        "ewm_config": ewm_config or {},
    }
    with open(os.path.join(folder, "training_info.json"), "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=2, sort_keys=True)
    note = (
        "The base is the embedded tiny random model, built in code (`tiny`), not a Hub repository: "
        "`AutoPeftModel` cannot rebuild it; use `modeling_affectverse.loading.load`."
        if base == "tiny"
        else f"The base is `{base}`."
    )
    card = ModelCard.from_template(
        ModelCardData(base_model=hub_id(base), library_name="peft", tags=["affectverse", "lora"]),
        template_path=ADAPTER_CARD,
        model_name=os.path.basename(os.path.abspath(folder)),
        folder=os.path.abspath(folder),
        lora_targets=str(lora_targets or "q/k/v/o of the decoder layers"),
        base_description=f"`{base}`" + (" plus the EWM overrides in `ewm_config.json`" if ewm_config else ""),
        base_note=note,
        training_summary=f"{train_rows} rows of {', '.join(datasets)} (`{info['train_manifest']}`), seed {seed}; "
        "details in `training_info.json`.",
    )
    card.save(os.path.join(folder, "README.md"))


def export_merged(adapter_folder: str | os.PathLike, folder: str | os.PathLike, base: str | None = None) -> str:
    """Merge a saved adapter into a fresh copy of its base and save a full AffectVerse checkpoint (EWM included) with
    its processor; generation stops at `<|im_end|>`.

    Built from the adapter folder on a clean base (`modeling_affectverse.loading.load`), never from a live training
    model: a model a trainer has wrapped or patched (hooks, a rebound `forward`) would carry that into the copy.
    The folder loads with `AffectVerseForConditionalGeneration.from_pretrained` or, with the remote code,
    `AutoModel.from_pretrained(folder, trust_remote_code=True)`.
    """
    folder = os.fspath(folder)
    model, processor = load(adapter_folder, base=base)
    merged = model.merge_and_unload()
    merged.configure_generation(processor.tokenizer)
    merged.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


__all__ = [
    "LLM_ATTENTION",
    "affectverse_lora_config",
    "export_merged",
    "write_adapter_card",
]
