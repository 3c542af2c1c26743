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
from collections.abc import Callable
from dataclasses import dataclass
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


def copy_metadata(reader: Any, writer: Any, keep: Callable[[str], bool]) -> None:
    """Writes the metadata fields of `reader` whose keys `keep` accepts into `writer`, types kept."""
    import gguf

    for key, field in reader.fields.items():
        if keep(key):
            value_type = field.types[0]
            sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(key, field.contents(), value_type, sub_type=sub_type)


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


@dataclass(frozen=True)
class BaseDescription:
    """What an adapter's export needs of its base: read from the GGUF, or (on a worker that has only
    the HF weights) from the weights and the registered base's architecture and fingerprint."""

    architecture: str
    layers: int
    heads: int
    kv_heads: int
    shapes: dict[str, tuple[int, int]]  # (in, out) features of each 2-D weight, by GGUF tensor name
    fingerprint: str


def describe_gguf(gguf_path: Any) -> BaseDescription:
    reader = _reader(gguf_path)
    facts = base_facts(reader)
    return BaseDescription(
        architecture=str(facts["architecture"]),
        layers=int(facts["layers"]),
        heads=int(facts["heads"]),
        kv_heads=int(facts["kv_heads"]),
        shapes=base_shapes(reader),
        fingerprint=base_fingerprint(reader),
    )


def export_adapter(adapter_dir: str | Path, base: str | Path | BaseDescription, out_path: str | Path) -> Path:
    """Writes `adapter_dir` (peft save_pretrained) as a GGUF LoRA adapter for `base` (its GGUF, or its description)."""
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
    described = base if isinstance(base, BaseDescription) else describe_gguf(base)
    architecture = described.architecture
    permute = architecture in PERMUTED_ARCHITECTURES
    shapes = described.shapes

    writer = gguf.GGUFWriter(str(out_path), architecture)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", alpha)
    writer.add_string(FINGERPRINT_KEY, described.fingerprint)
    writer.add_uint32("twin.base.block_count", described.layers)

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
        if layer >= described.layers:
            raise ExportError(f"{name}: layer {layer} but the base has {described.layers} layers")
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
            weight = permute_rows(weight, described.heads)
        if is_b and permute and module == "self_attn.k_proj":
            weight = permute_rows(weight, described.kv_heads)
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


# A fully tuned model: the base GGUF rewritten with the tuned weights (same metadata, same tokenizer).
LAYER_NAMES = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    **MODULE_NAMES,
}
GLOBAL_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7}  # llama.cpp's general.file_type (LLAMA_FTYPE_*)


def gguf_tensor_name(hf_name: str) -> str | None:
    """model.layers.3.self_attn.q_proj.weight → blk.3.attn_q.weight; None for a name llama.cpp has no tensor for."""
    if hf_name in GLOBAL_NAMES:
        return GLOBAL_NAMES[hf_name]
    parts = hf_name.split(".")
    if parts[:2] != ["model", "layers"] or len(parts) < 5:
        return None
    module = LAYER_NAMES.get(".".join(parts[3:-1]))
    return f"blk.{parts[2]}.{module}.{parts[-1]}" if module else None


def _encode(data: np.ndarray, export_type: str) -> tuple[np.ndarray, Any]:
    """The tensor as written, and its GGML type: norms and biases stay f32, as llama.cpp's converter keeps them."""
    import gguf

    if data.ndim == 1 or export_type == "f32":
        return data.astype(np.float32), gguf.GGMLQuantizationType.F32
    if export_type == "f16":
        return data.astype(np.float16), gguf.GGMLQuantizationType.F16
    return gguf.quants.quantize(data.astype(np.float32), gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0


def export_full_model(model_dir: str | Path, base_gguf: str | Path, out_path: str | Path, export_type: str = "f16") -> Path:
    """Writes a fully tuned HF model (safetensors) as a GGUF for llama.cpp, on the base GGUF's metadata.

    Tensors are converted one at a time and streamed to the file, so a 7B model never sits in
    memory twice. Every tuned tensor must land on a base tensor of the same shape; base tensors
    with no HF counterpart (e.g. rope frequencies) are copied as they are.
    """
    import gguf
    from safetensors import safe_open

    if export_type not in FILE_TYPES:
        raise ExportError(f"export_type={export_type!r}: expected one of {', '.join(FILE_TYPES)}")
    model_dir, out_path = Path(model_dir), Path(out_path)
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ExportError(f"{model_dir}: no .safetensors weights (the trainer writes model.safetensors there)")
    base = _reader(base_gguf)
    facts = base_facts(base)
    architecture = str(facts["architecture"])
    permute = architecture in PERMUTED_ARCHITECTURES
    heads = {"attn_q": int(facts["heads"]), "attn_k": int(facts["kv_heads"])}

    sources: dict[str, tuple[Path, str]] = {}
    for file in files:
        with safe_open(str(file), "np") as weights:
            for name in weights.keys():
                target = gguf_tensor_name(name)
                if target is None:
                    raise ExportError(f"{file.name}: tensor {name} has no llama.cpp counterpart in {architecture}")
                sources[target] = (file, name)
    base_tensors = {t.name: t for t in base.tensors}
    missing = sorted(set(sources) - set(base_tensors))
    if missing:
        raise ExportError(f"the base GGUF has no tensors {missing[:5]}: was the model trained from another base?")

    def tuned(name: str) -> np.ndarray:
        file, key = sources[name]
        with safe_open(str(file), "np") as weights:
            data = weights.get_tensor(key).astype(np.float32)
        expected = tuple(int(d) for d in reversed(base_tensors[name].shape))
        if data.shape != expected:
            raise ExportError(f"{key}: shape {list(data.shape)} but the base's {name} is {list(expected)}")
        kind = name.split(".")[2] if name.startswith("blk.") else ""
        if permute and kind in heads and name.endswith(".weight"):
            data = permute_rows(data, heads[kind])
        return _encode(data, export_type)[0]

    writer = gguf.GGUFWriter(str(out_path), architecture)
    copy_metadata(
        base,
        writer,
        lambda key: key not in ("general.architecture", "general.file_type") and not key.startswith("GGUF."),
    )
    writer.add_uint32("general.file_type", FILE_TYPES[export_type])
    writer.add_string(FINGERPRINT_KEY, base_fingerprint(base))  # provenance: the base it was tuned from

    for tensor in base.tensors:
        if tensor.name in sources:
            elements = tuple(int(d) for d in reversed(tensor.shape))
            sample, kind = _encode(np.zeros((1, elements[-1]) if len(elements) == 2 else elements, np.float32), export_type)
            byte_shape = (elements[0], *sample.shape[1:]) if len(elements) == 2 else sample.shape
            nbytes = int(np.prod(byte_shape)) * sample.dtype.itemsize
            writer.add_tensor_info(tensor.name, byte_shape, sample.dtype, nbytes, raw_dtype=kind)
        else:
            writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes, tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in base.tensors:
        writer.write_tensor_data(tuned(tensor.name) if tensor.name in sources else tensor.data)
    writer.close()
    return out_path
