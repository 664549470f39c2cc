"""AffectVerse: an emotional world model on the Qwen2.5-Omni thinker, as a transformers model.

Importing the package registers `affectverse` with AutoConfig, AutoModel, AutoModelForCausalLM
and AutoProcessor, so `Auto*.from_pretrained(folder)` works without `trust_remote_code` when
the package is installed.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoProcessor

from .configuration_affectverse import AffectVerseConfig
from .ewm import EmotionWorldModule, EWMOutput
from .modeling_affectverse import AffectVerseCausalLMOutputWithPast, AffectVerseForConditionalGeneration
from .processing_affectverse import BELIEF_TOKEN, AffectVerseProcessor

AutoConfig.register("affectverse", AffectVerseConfig, exist_ok=True)
AutoModel.register(AffectVerseConfig, AffectVerseForConditionalGeneration, exist_ok=True)
AutoModelForCausalLM.register(AffectVerseConfig, AffectVerseForConditionalGeneration, exist_ok=True)
AutoProcessor.register(AffectVerseConfig, AffectVerseProcessor, exist_ok=True)

__version__ = "0.1.0"

__all__ = [
    "BELIEF_TOKEN",
    "AffectVerseCausalLMOutputWithPast",
    "AffectVerseConfig",
    "AffectVerseForConditionalGeneration",
    "AffectVerseProcessor",
    "EWMOutput",
    "EmotionWorldModule",
]
