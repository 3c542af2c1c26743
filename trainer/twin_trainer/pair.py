"""One model, checked: the GGUF that is served and the HF weights the trainer loads must be the same.

A GGUF is a conversion of HF weights: the tensors renamed (gguf's TensorNameMap), their dims listed
innermost first, the q and k rows of llama-architecture models permuted (gguf_export.permute_rows),
the values quantized. The check undoes each step and compares, in this order: the architecture,
the layer count, every tensor's name and shape, the vocabulary size and the special tokens, then
the values of a few rows of every tensor (dequantized) against the weights' same rows, as the
relative error of those rows, within what the GGUF's quantization type loses. The first mismatch is
what the refusal names. An adapter trained on the weights then does what it learned on the GGUF.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .gguf_export import PERMUTED_ARCHITECTURES, BaseDescription, _reader, metadata_value, permute_rows
from .weights import fingerprint_of

# GGUF architecture → the HF model types llama.cpp converts to it (convert_hf_to_gguf.py). Other
# architectures change values as they convert (Gemma's norms, for one), which this check cannot undo.
ARCHITECTURES = {"llama": {"llama", "mistral"}, "qwen2": {"qwen2"}, "qwen3": {"qwen3"}}
CHAT_TOKENS = ("<|im_start|>", "<|im_end|>")
# Rows compared per tensor (1-D tensors whole), drawn with a fixed seed: not evenly spaced, which
# for q/k would pick only rows llama.cpp's permutation leaves in place (each head's first and last).
ROWS_PER_TENSOR = 8
SKIPPED_WEIGHTS = ("rotary_emb.inv_freq",)  # buffers some checkpoints save; a GGUF recomputes them
SKIPPED_GGUF = ("rope_freqs.weight",)  # computed by the converter, no tensor in the weights

# Relative error of the compared rows, ‖gguf − weights‖ / ‖weights‖, that a type may show: about
# twice what it loses on normally distributed weights (4 bits over a block of 32: ~8%), so that
# weights of another fine-tune, or a tensor scaled by 1.5 (33%), fall outside.
EXACT_TOLERANCE = {"F32": 1e-5, "F16": 2e-3, "BF16": 1e-2, "Q8_0": 0.02, "Q8_1": 0.02, "Q8_K": 0.02, "Q6_K": 0.05}
BITS_TOLERANCE = {5: 0.08, 4: 0.15, 3: 0.3, 2: 0.5, 1: 0.8}


class PairMismatch(ValueError):
    """The GGUF and the HF weights are not the same model; the message names the first difference."""


def tolerance(type_name: str) -> float:
    """The relative error a GGUF tensor of this type may show against the weights it was made from."""
    if type_name in EXACT_TOLERANCE:
        return EXACT_TOLERANCE[type_name]
    bits = re.match(r"^(?:I|T)?Q(\d)", type_name)
    if bits and int(bits[1]) in BITS_TOLERANCE:
        return BITS_TOLERANCE[int(bits[1])]
    raise PairMismatch(f"GGUF tensors of type {type_name}: twin has no tolerance for it, so cannot check the pair")


@dataclass
class PairReport:
    architecture: str
    layers: int
    tensors: int
    vocabulary: int
    compared: int = 0
    worst: dict[str, Any] = field(default_factory=dict)  # the compared tensor closest to its tolerance
    weights_fingerprint: str = ""  # weights.weights_fingerprint of the folder checked, for a worker without the GGUF

    def as_json(self) -> dict[str, Any]:
        return {"ok": True, **self.__dict__}


# ── the weights' side: safetensors read lazily ─────────────────────────────────


class Weights:
    """An HF folder's config and tensors, each tensor read only as far as it is compared."""

    def __init__(self, folder: Path):
        from safetensors import safe_open

        self.folder = folder
        config = folder / "config.json"
        if not config.is_file():
            raise FileNotFoundError(f"{folder}: no config.json (expected an HF model folder)")
        self.config = json.loads(config.read_text())
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{folder}: no .safetensors weights")
        self.files = [safe_open(str(file), framework="pt") for file in files]
        self.where = {name: handle for handle in self.files for name in handle.keys()}

    def shape(self, name: str) -> list[int]:
        return list(self.where[name].get_slice(name).get_shape())

    def rows(self, name: str, rows: list[int] | None) -> np.ndarray:
        """The tensor's rows (all of a 1-D tensor) as float32."""
        part = self.where[name].get_slice(name)
        if rows is None:
            return part[:].float().numpy()
        return np.concatenate([part[row : row + 1].float().numpy() for row in rows])


def _config(config: dict[str, Any], *keys: str) -> Any:
    """A value of an HF config, also where a multimodal config nests it under text_config."""
    for source in (config, config.get("text_config") or {}):
        for key in keys:
            if source.get(key) is not None:
                return source[key]
    return None


def tensor_names(weights: Weights, architecture: str, layers: int) -> dict[str, str]:
    """GGUF tensor name → the weights' tensor name, for every tensor of the weights."""
    import gguf

    arch = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}[architecture]
    names = gguf.get_tensor_name_map(arch, layers)
    mapped: dict[str, str] = {}
    for name in weights.where:
        if name.endswith(SKIPPED_WEIGHTS):
            continue
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise PairMismatch(f"the weights' tensor {name} has no counterpart in a {architecture} GGUF")
        mapped[target] = name
    return mapped


def describe_weights(folder: str | Path, architecture: str, fingerprint: str) -> BaseDescription:
    """The export's view of a base from its HF weights alone, for a worker that has no GGUF: the
    architecture and fingerprint are the registered GGUF's (the run's row carries them), the
    shapes the weights' own, which the pair check found equal to the GGUF's."""
    weights = Weights(Path(folder))
    layers = int(_config(weights.config, "num_hidden_layers", "n_layer"))
    heads = int(_config(weights.config, "num_attention_heads"))
    shapes = {}
    for target, name in tensor_names(weights, architecture, layers).items():
        shape = weights.shape(name)
        if len(shape) == 2:
            shapes[target] = (shape[1], shape[0])  # (in, out), as GGUF lists a weight's dims
    return BaseDescription(
        architecture=architecture,
        layers=layers,
        heads=heads,
        kv_heads=int(_config(weights.config, "num_key_value_heads") or heads),
        shapes=shapes,
        fingerprint=fingerprint,
    )


# ── the check ──────────────────────────────────────────────────────────────────


def _gguf_tensors(gguf_path: Path, reader: Any) -> dict[str, Any]:
    """Every tensor of a GGUF by name, across the parts of a split one (name-00001-of-00003.gguf)."""
    split = re.match(r"^(.*)-(\d{5})-of-(\d{5})\.gguf$", gguf_path.name)
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    if split:
        count = int(split[3])
        for index in range(2, count + 1):
            part = gguf_path.with_name(f"{split[1]}-{index:05d}-of-{count:05d}.gguf")
            tensors.update({tensor.name: tensor for tensor in _reader(part).tensors})
    return tensors


def check_pair(gguf_path: str | Path, weights_folder: str | Path) -> PairReport:
    """Raises PairMismatch naming the first difference between the GGUF and the weights; else what was compared."""
    gguf_path, folder = Path(gguf_path), Path(weights_folder)
    reader = _reader(gguf_path)
    weights = Weights(folder)

    # ── architecture and layers ──
    architecture = str(metadata_value(reader, "general.architecture"))
    model_type = str(_config(weights.config, "model_type"))
    if architecture not in ARCHITECTURES:
        raise PairMismatch(
            f"architecture: the GGUF is {architecture}; twin checks {', '.join(sorted(ARCHITECTURES))} pairs only"
        )
    if model_type not in ARCHITECTURES[architecture]:
        raise PairMismatch(f"architecture: the GGUF is {architecture}, the weights are {model_type}")
    layers = int(metadata_value(reader, f"{architecture}.block_count") or 0)
    weight_layers = int(_config(weights.config, "num_hidden_layers", "n_layer") or 0)
    if layers != weight_layers:
        raise PairMismatch(f"layer count: the GGUF has {layers}, the weights {weight_layers}")

    # ── every tensor: name and shape ──
    tensors = _gguf_tensors(gguf_path, reader)
    sources = tensor_names(weights, architecture, layers)
    tied = bool(_config(weights.config, "tie_word_embeddings"))
    if tied and "output.weight" not in tensors:
        sources.pop("output.weight", None)  # a tied head some checkpoints also save as lm_head
    if tied and "output.weight" in tensors and "output.weight" not in sources and "token_embd.weight" in sources:
        sources["output.weight"] = sources["token_embd.weight"]  # a tied head the converter wrote out
    for name, tensor in tensors.items():
        if name not in sources and not name.endswith(SKIPPED_GGUF):
            raise PairMismatch(f"{name}: in the GGUF, but the weights have no tensor for it")
    for target, name in sources.items():
        if target not in tensors:
            raise PairMismatch(f"{name}: in the weights, but the GGUF has no {target}")
        expected = [int(d) for d in reversed(tensors[target].shape)]  # GGUF lists dims innermost first
        shape = weights.shape(name)
        if shape != expected:
            raise PairMismatch(f"{target} ({name}): shape {shape} in the weights, {expected} in the GGUF")

    # ── vocabulary and special tokens ──
    vocabulary = _check_vocabulary(reader, weights, tensors)

    # ── values: a few rows of every tensor, dequantized ──
    report = PairReport(architecture, layers, len(tensors), vocabulary)
    heads = {
        "attn_q.weight": int(metadata_value(reader, f"{architecture}.attention.head_count") or 0),
        "attn_k.weight": int(metadata_value(reader, f"{architecture}.attention.head_count_kv") or 0),
    }
    permuted = architecture in PERMUTED_ARCHITECTURES
    worst = -1.0
    for target, tensor in tensors.items():
        if target not in sources:
            continue
        kind = ".".join(target.split(".")[-2:])
        error, allowed = _compare(tensor, weights, sources[target], heads[kind] if permuted and kind in heads else 0)
        if error is None:
            continue
        if not error <= allowed:  # a NaN fails too
            raise PairMismatch(
                f"{target} ({sources[target]}): its values differ from the weights' by {error:.1%} "
                f"(relative error of {ROWS_PER_TENSOR} rows; {tensor.tensor_type.name} allows {allowed:.1%})"
            )
        report.compared += 1
        if error / allowed > worst:
            worst = error / allowed
            report.worst = {"tensor": target, "type": tensor.tensor_type.name, "error": error, "tolerance": allowed}
    report.weights_fingerprint = fingerprint_of(folder)
    return report


def _check_vocabulary(reader: Any, weights: Weights, tensors: dict[str, Any]) -> int:
    """The vocabulary's size, and ChatML, end and begin tokens at the same ids on both sides."""
    from transformers import AutoTokenizer

    listed = reader.fields.get("tokenizer.ggml.tokens")
    if listed is None:
        raise PairMismatch("vocabulary: the GGUF has no tokenizer.ggml.tokens")
    tokens = [bytes(listed.parts[index]).decode("utf-8", errors="replace") for index in listed.data]
    size = _config(weights.config, "vocab_size")
    if size is not None and int(size) != len(tokens):
        raise PairMismatch(f"vocabulary size: the GGUF has {len(tokens)} tokens, the weights' config {size}")
    tokenizer = AutoTokenizer.from_pretrained(weights.folder)
    if len(tokenizer) > len(tokens):
        raise PairMismatch(f"vocabulary size: the weights' tokenizer has {len(tokenizer)} tokens, the GGUF {len(tokens)}")
    ids = {token: index for index, token in enumerate(tokens)}
    vocabulary = tokenizer.get_vocab()
    for token in CHAT_TOKENS:
        if token not in ids or token not in vocabulary:
            where = "the GGUF" if token not in ids else "the weights' tokenizer"
            raise PairMismatch(f"special token {token}: {where} has none")
        if ids[token] != vocabulary[token]:
            raise PairMismatch(f"special token {token}: id {ids[token]} in the GGUF, {vocabulary[token]} in the weights")
    for index, added in sorted(tokenizer.added_tokens_decoder.items()):
        if index < len(tokens) and tokens[index] != added.content:
            raise PairMismatch(f"special token {added.content}: id {index} in the weights, {tokens[index]!r} in the GGUF")
    for role in ("eos", "bos"):
        ours = metadata_value(reader, f"tokenizer.ggml.{role}_token_id")
        theirs = getattr(tokenizer, f"{role}_token_id")
        if ours is not None and theirs is not None and int(ours) != int(theirs):
            raise PairMismatch(
                f"{role} token: id {ours} ({tokens[int(ours)]}) in the GGUF, "
                f"{theirs} ({getattr(tokenizer, f'{role}_token')}) in the weights"
            )
    return len(tokens)


def _compare(tensor: Any, weights: Weights, name: str, heads: int) -> tuple[float | None, float]:
    """(relative error of the compared rows, its tolerance); (None, …) for a tensor not compared (3-D)."""
    from gguf.quants import dequantize

    allowed = tolerance(tensor.tensor_type.name)
    dims = [int(d) for d in reversed(tensor.shape)]
    if len(dims) > 2:
        return None, allowed
    data = np.asarray(tensor.data)
    if len(dims) == 1:
        ours = dequantize(data.reshape(1, -1), tensor.tensor_type).reshape(-1)
        theirs = weights.rows(name, None)
    else:
        count = dims[0]
        picked = sorted(int(i) for i in np.random.default_rng(0).choice(count, min(ROWS_PER_TENSOR, count), replace=False))
        # GGUF row i of a permuted q/k weight is the weights' row order[i].
        order = permute_rows(np.arange(count), heads) if heads else np.arange(count)
        ours = dequantize(data.reshape(count, -1)[picked], tensor.tensor_type).reshape(len(picked), dims[1])
        theirs = weights.rows(name, [int(order[i]) for i in picked])
    norm = float(np.linalg.norm(theirs))
    difference = float(np.linalg.norm(ours.astype(np.float64) - theirs.astype(np.float64)))
    if norm == 0.0:
        return (0.0 if difference == 0.0 else float("inf")), allowed
    return difference / norm, allowed
