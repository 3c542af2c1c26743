"""Loading the base model for training.

The served base is a GGUF file; the trainer needs the same weights as a transformers model.
transformers can read a GGUF (dequantizing it), which takes a while, so the converted model is
kept in a cache folder named by the file's size and modification time and reused next time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from .environment import cache_dir


def cache_root() -> Path:
    return cache_dir() / "hf"


# Part of the cache key: bump it when the conversion changes, so old conversions are not reused.
CONVERSION_VERSION = 2


def _cache_key(gguf: Path) -> str:
    stat = gguf.stat()
    key = f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:v{CONVERSION_VERSION}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def gguf_tokenizer(gguf: Path) -> Any:
    """The tokenizer transformers builds from a GGUF, splitting text as llama.cpp does."""
    from transformers import AutoTokenizer

    from .gguf_export import metadata_value

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    pre = metadata_value(gguf, "tokenizer.ggml.pre")
    match_llama_cpp_pre_tokenizer(tokenizer, pre if isinstance(pre, str) else None)
    return tokenizer


def match_llama_cpp_pre_tokenizer(tokenizer: Any, pre: str | None) -> None:
    """Makes a GGUF-converted tokenizer split text as llama.cpp does for that `tokenizer.ggml.pre`.

    transformers 5.24 converts a GGUF's BPE vocabulary without llama.cpp's pre-tokenizer for some
    `pre` names: for "smollm" it drops the split of every digit, so "\n\n1." became two "\n"
    tokens in training but one "\n\n" when served. (test/adapter.test.ts compares both on fixtures.)
    """
    if pre != "smollm":
        return
    from tokenizers import pre_tokenizers

    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])


class HardwareError(RuntimeError):
    """The run asks for hardware or libraries this machine does not have."""


def pick_device(setting: str = "auto") -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise HardwareError(f"device={setting}: this machine has no CUDA GPU that PyTorch {torch.__version__} can use")
    return torch.device(setting)


def pick_dtype(setting: str, device: torch.device) -> torch.dtype:
    """bf16 where the GPU supports it (half the memory, same range as fp32); fp32 on CPU."""
    if setting == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, setting)


def quantization_for(method: str, device: torch.device) -> Any | None:
    """QLoRA's 4-bit NF4 base (bitsandbytes): CUDA only, refused clearly anywhere else."""
    if method != "qlora":
        return None
    if device.type != "cuda":
        raise HardwareError(
            "method=qlora needs a CUDA GPU (bitsandbytes 4-bit kernels); on this machine use method=lora"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise HardwareError("method=qlora needs bitsandbytes: pip install bitsandbytes") from error
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def convert_gguf(gguf: Path) -> Path:
    """An HF folder (safetensors, config, tokenizer) with a GGUF's weights dequantized to fp32.

    Converted once, then reused from the cache (named by the file's path, size and modification time).
    """
    from transformers import AutoModelForCausalLM

    converted = cache_root() / f"{gguf.stem}-{_cache_key(gguf)}"
    if (converted / "config.json").exists():
        return converted
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = gguf_tokenizer(gguf)
    # The weights are plain dequantized tensors now; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # One partial folder per process: the processes of a multi-process run may all convert
    # at once; the first rename wins and the others drop their copy.
    partial = converted.parent / f"{converted.name}.part-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    try:
        partial.rename(converted)
    except OSError:
        if not (converted / "config.json").exists():
            raise
        shutil.rmtree(partial, ignore_errors=True)
    return converted


def load_base(
    path: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str = "sdpa",
    quantization: Any | None = None,
) -> tuple[Any, Any]:
    """(model, tokenizer) from an HF folder or a GGUF file (converted once, then cached)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .forward import PACKED_ATTENTIONS, register_packed_attention, resolve_attention

    attn_implementation = resolve_attention(attn_implementation, torch.cuda.is_available())
    if attn_implementation in PACKED_ATTENTIONS:
        register_packed_attention(attn_implementation)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"base model {path}: no such file or folder")
    if path.suffix == ".gguf":
        path = convert_gguf(path)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, attn_implementation=attn_implementation, quantization_config=quantization
    )
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer
