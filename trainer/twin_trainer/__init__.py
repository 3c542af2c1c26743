"""twin's trainer: LoRA fine-tuning on the dataset that `twin dataset` builds.

The trainer is format-agnostic: the TypeScript dataset builder renders every example into
segments (text + whether it is trained); the trainer only joins, tokenizes and labels them.
"""
