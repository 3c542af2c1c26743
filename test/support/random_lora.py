"""Test support: a LoRA on every linear projection with random B (A as peft initialises it), so
the adapter changes the output from the first step; seeded, so every run makes the same adapter."""

import torch
from peft import LoraConfig, get_peft_model

from twin_trainer.train import LINEAR_PROJECTIONS


def random_lora(model, *, std: float, r: int = 8, alpha: int = 16):
    torch.manual_seed(1)  # before peft initialises A
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, target_modules=LINEAR_PROJECTIONS))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=std)
    return model
