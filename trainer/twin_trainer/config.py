"""A training run's settings: one YAML file from configs/, any key overridable with `--set key=value`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

METHODS = ("lora", "qlora", "full")
EXPORT_TYPES = ("f16", "q8_0", "f32")
BATCHING = ("packed", "padded", "ungrouped")
LOSSES = ("logits", "chunked", "liger")


def checkpoint_share(setting: str) -> float | None:
    """The share of layers a numeric `gradient_checkpointing` names, or None when it is not a share."""
    try:
        share = float(setting)
    except ValueError:
        return None
    return share if 0 <= share <= 1 else None


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


@dataclass
class TrainConfig:
    base: str = ""  # a GGUF file or an HF folder: the same model that is served
    # The folder `twin dataset --out` wrote, or `postgres:<dataset id>` (read through DATABASE_URL).
    dataset: str = ""
    output: str = "runs/latest"
    # "lora"; "qlora": 4-bit base through bitsandbytes, CUDA only, experimental; "full": every
    # weight, sharded with FSDP2 over the processes `torchrun` starts (the worker launches it).
    method: str = "lora"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    use_rslora: bool = False  # alpha / sqrt(r) scaling; the export rescales alpha so llama.cpp agrees
    use_dora: bool = False  # trains, but llama.cpp cannot run DoRA: export refuses it
    learning_rate: float = 2e-4
    warmup_ratio: float = 0.03
    epochs: float = 2.0
    max_steps: int = 0  # 0: from epochs
    # Train until this many tokens were learnt (labelled), whatever the rows around them hold; 0: off.
    # Two runs compared on equal terms (with and without memory: `twin eval --compare-memory`) set it alike.
    max_trained_tokens: int = 0
    tokens_per_batch: int = 2048
    # or, for comparison, "padded" (length-grouped, as transformers' group_by_length) or "ungrouped"
    # (padded batches of examples in random order)
    batching: str = "packed"
    eval_every: int = 50
    max_eval_examples: int = 0  # 0: the whole held-out set
    save_every: int = 50
    seed: int = 0
    # Attention within each packed example (forward.py): "twin_packed" one call per example,
    # "twin_varlen" one flash-attention call per layer over the row (CUDA), "twin_flex" one
    # FlexAttention call with a document mask; "auto": twin_varlen on a GPU, twin_packed on a CPU.
    # "sdpa", "eager" or "flash_attention_2" also work for packed rows, through position ids.
    attn_implementation: str = "auto"
    # "logits": fp32 logits of every learnt position at once; "chunked": a slice at a time, never
    # all of them; "liger": Liger's fused Triton kernel (GPU, `pip install liger-kernel`). LoRA only.
    loss_implementation: str = "logits"
    # torch.compile each decoder layer: "auto" for LoRA on a GPU (1.5× on an H200,
    # bench/fsdp/results), "on", or "off". The first steps compile.
    compile_layers: str = "auto"
    device: str = "auto"  # "auto": CUDA when there is one, else CPU
    dtype: str = "auto"  # "auto": bf16 on a GPU that has it, else fp32
    # Recompute activations in the backward pass (trades compute for memory): "on" every layer,
    # "off", a share of the layers ("0.5"), or "auto": on a GPU as many layers as the memory
    # estimate says the card needs (none if it all fits), on a CPU none.
    gradient_checkpointing: str = "auto"
    # Memory of one GPU, for the estimate that refuses a run that cannot fit before it loads
    # anything; 0: the GPU's own memory (no check on CPU).
    gpu_memory_gb: float = 0
    # Full fine-tuning under the worker: processes to launch (0: one per GPU; one on a CPU).
    processes: int = 0
    export_type: str = "f16"  # a fully tuned model's GGUF: f16, q8_0 or f32 (LoRA adapters are always f32)
    events: str = ""  # a file for the JSON-line events; empty: stdout

    def check(self) -> TrainConfig:
        problems = []
        if self.method not in METHODS:
            problems.append(f"method={self.method!r}: expected one of {', '.join(METHODS)}")
        if self.export_type not in EXPORT_TYPES:
            problems.append(f"export_type={self.export_type!r}: expected one of {', '.join(EXPORT_TYPES)}")
        if self.batching not in BATCHING:
            problems.append(f"batching={self.batching!r}: expected one of {', '.join(BATCHING)}")
        for key in ("lora_r", "lora_alpha", "tokens_per_batch"):
            if getattr(self, key) <= 0:
                problems.append(f"{key}={getattr(self, key)!r}: must be positive")
        if not 0 <= self.lora_dropout < 1:
            problems.append(f"lora_dropout={self.lora_dropout!r}: must be in [0, 1)")
        if self.max_trained_tokens < 0:
            problems.append(f"max_trained_tokens={self.max_trained_tokens!r}: must be 0 (off) or positive")
        if self.max_trained_tokens and self.max_steps:
            problems.append("max_trained_tokens and max_steps both set: choose one")
        if self.learning_rate <= 0 or self.epochs <= 0:
            problems.append("learning_rate and epochs must be positive")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            problems.append(f"dtype={self.dtype!r}: expected auto, float32, bfloat16 or float16")
        if self.gradient_checkpointing not in ("auto", "on", "off") and checkpoint_share(self.gradient_checkpointing) is None:
            problems.append(
                f"gradient_checkpointing={self.gradient_checkpointing!r}: expected auto, on, off or a share of the layers in [0, 1]"
            )
        if self.compile_layers not in ("auto", "on", "off"):
            problems.append(f"compile_layers={self.compile_layers!r}: expected auto, on or off")
        if self.loss_implementation not in LOSSES:
            problems.append(f"loss_implementation={self.loss_implementation!r}: expected one of {', '.join(LOSSES)}")
        elif self.loss_implementation != "logits" and self.method == "full":
            problems.append(
                f"loss_implementation={self.loss_implementation}: full fine-tuning shards the output head; use logits"
            )
        if problems:
            raise ConfigError("; ".join(problems))
        return self


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _coerce(key: str, raw: str, current: Any) -> Any:
    value = yaml.safe_load(raw)
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"--set {key}={raw}: expected true or false")
        return value
    if isinstance(current, (int, float)):
        try:  # YAML 1.1 reads 1e-4 as a string; Python's own parsers read it as a number
            return int(raw) if isinstance(current, int) else float(raw)
        except ValueError:
            raise ConfigError(f"--set {key}={raw}: expected {'an integer' if isinstance(current, int) else 'a number'}") from None
    if isinstance(current, str):
        return raw
    return value


def load_config(path: str | None, overrides: list[str]) -> TrainConfig:
    """A YAML config (every key a TrainConfig field), then `key=value` overrides on top."""
    try:
        values = yaml.safe_load(Path(path).read_text()) if path else {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot be read as YAML ({error})") from error
    values = values or {}
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(FIELDS)}")
    try:
        config = TrainConfig(**values)
    except TypeError as error:
        raise ConfigError(f"{path}: {error}") from error
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or key not in FIELDS:
            raise ConfigError(f"--set {override}: expected key=value with a key among {sorted(FIELDS)}")
        setattr(config, key, _coerce(key, raw, getattr(config, key)))
    return config.check()
