"""Fine-tuning: the TRL trainer with the imagination loss, the SFT script, LoRA adapters and the ablation runner."""
