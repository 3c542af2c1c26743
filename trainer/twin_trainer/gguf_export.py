"""A PEFT LoRA adapter as a GGUF LoRA file that llama.cpp (and so node-llama-cpp) loads.

llama.cpp stores llama-architecture q and k weights with their rows permuted (rotary halves
interleaved); an adapter's B matrices for q and k must be permuted the same way or the adapter
silently does the wrong thing. Qwen2/Qwen3 are stored unpermuted. The base's fingerprint goes
into the metadata so serving can refuse an adapter trained for another base with equal shapes.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

PERMUTED_ARCHITECTURES = {"llama"}  # Llama, Mistral, SmolLM2 are all "llama" in GGUF
MODULE_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
FINGERPRINT_KEY = "twin.base.fingerprint"


class ExportError(ValueError):
    """The adapter cannot be written for this base (unsupported method or architecture mismatch)."""


def permute_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """The row order llama.cpp's converter gives q/k weights of llama models (per head, halves interleaved)."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _reader(source: Any) -> Any:
    """A GGUFReader for a path, or the reader itself (reading a large GGUF's header once is enough)."""
    from gguf import GGUFReader

    return source if isinstance(source, GGUFReader) else GGUFReader(str(source))


def base_fingerprint(gguf_path: Any) -> str:
    """sha256 over the base GGUF's tensors: `name:dims:type;` then the first 64 bytes of its data.

    Sorted by name (byte order), dims as GGUF stores them joined by "x", type as the GGML type
    number: a language-neutral recipe, so the bot (node) computes the same value for a GGUF.
    """
    reader = _reader(gguf_path)
    digest = hashlib.sha256()
    for tensor in sorted(reader.tensors, key=lambda t: t.name.encode()):
        dims = "x".join(str(int(d)) for d in tensor.shape)
        digest.update(f"{tensor.name}:{dims}:{int(tensor.tensor_type)};".encode())
        digest.update(np.asarray(tensor.data).reshape(-1).view(np.uint8)[:64].tobytes())  # not the whole tensor
    return digest.hexdigest()


def metadata_value(gguf_path: Any, name: str) -> str | int | None:
    """One string or integer metadata field of a GGUF; None when it is absent."""
    value = _reader(gguf_path).fields.get(name)
    if value is None:
        return None
    part = value.parts[value.data[0]]
    return part.tobytes().decode() if value.types[0].name == "STRING" else int(part[0])


def base_facts(gguf_path: Any) -> dict[str, int | str]:
    reader = _reader(gguf_path)

    def field(name: str):
        return metadata_value(reader, name)

    architecture = field("general.architecture")
    return {
        "architecture": architecture,
        "layers": field(f"{architecture}.block_count"),
        "heads": field(f"{architecture}.attention.head_count"),
        "kv_heads": field(f"{architecture}.attention.head_count_kv"),
    }


def base_shapes(gguf_path: Any) -> dict[str, tuple[int, int]]:
    """(in, out) features of each 2-D weight in the base GGUF, by tensor name."""
    return {t.name: (int(t.shape[0]), int(t.shape[1])) for t in _reader(gguf_path).tensors if len(t.shape) == 2}


def export_adapter(adapter_dir: str | Path, base_gguf: str | Path, out_path: str | Path) -> Path:
    """Writes `adapter_dir` (peft save_pretrained) as a GGUF LoRA adapter for `base_gguf`."""
    import gguf
    from safetensors.numpy import load_file

    adapter_dir, out_path = Path(adapter_dir), Path(out_path)
    settings = json.loads((adapter_dir / "adapter_config.json").read_text())
    if settings.get("use_dora"):
        raise ExportError("DoRA adapters cannot be expressed as a llama.cpp LoRA; train with use_dora off")
    rank = int(settings["r"])
    alpha = float(settings["lora_alpha"])
    if settings.get("use_rslora"):
        # rsLoRA scales by alpha/sqrt(r); llama.cpp by alpha/r: rescale so both give the same update.
        alpha = alpha * math.sqrt(rank)
    base = _reader(base_gguf)
    facts = base_facts(base)
    architecture = str(facts["architecture"])
    permute = architecture in PERMUTED_ARCHITECTURES
    shapes = base_shapes(base)

    writer = gguf.GGUFWriter(str(out_path), architecture)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", alpha)
    writer.add_string(FINGERPRINT_KEY, base_fingerprint(base))
    writer.add_uint32("twin.base.block_count", int(facts["layers"]))

    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    written = 0
    for name in sorted(tensors):
        # base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight
        parts = name.split(".")
        if "layers" not in parts or parts[-2] not in ("lora_A", "lora_B"):
            raise ExportError(f"unexpected adapter tensor {name}: only LoRA on the decoder's linear layers exports")
        layer = int(parts[parts.index("layers") + 1])
        module = ".".join(parts[parts.index("layers") + 2 : -2])
        if module not in MODULE_NAMES:
            raise ExportError(f"{name}: LoRA on {module} has no llama.cpp tensor")
        if layer >= int(facts["layers"]):
            raise ExportError(f"{name}: layer {layer} but the base has {facts['layers']} layers")
        weight = tensors[name].astype(np.float32)
        is_b = parts[-2] == "lora_B"
        target = f"blk.{layer}.{MODULE_NAMES[module]}.weight"
        if target not in shapes:
            raise ExportError(f"{name}: the base has no tensor {target}")
        features_in, features_out = shapes[target]
        if (is_b and weight.shape[0] != features_out) or (not is_b and weight.shape[1] != features_in):
            raise ExportError(
                f"{name}: shape {list(weight.shape)} does not fit the base's {target} "
                f"({features_out}×{features_in}); was the adapter trained on another base?"
            )
        if is_b and permute and module == "self_attn.q_proj":
            weight = permute_rows(weight, int(facts["heads"]))
        if is_b and permute and module == "self_attn.k_proj":
            weight = permute_rows(weight, int(facts["kv_heads"]))
        suffix = "lora_b" if is_b else "lora_a"
        writer.add_tensor(f"blk.{layer}.{MODULE_NAMES[module]}.weight.{suffix}", np.ascontiguousarray(weight))
        written += 1
    if written == 0:
        raise ExportError(f"{adapter_dir}: no LoRA tensors found")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path
