"""Writes a GGUF with a real deployment's layer shapes and random weights, for speed measurements only.

The test model (SmolLM2-135M, 98 MB) fits in a server CPU's last-level cache, so decoding it is
compute-bound and batching gains little; the models the twin serves for real (a 7B base) stream
gigabytes of weights per token, and batching shares that stream across conversations. This model
has Qwen2.5-7B-Instruct's layer shapes (hidden 3584, 28 query heads over 4 key/value heads, q/k/v
biases, feed-forward 18944) but only LAYERS of its 28 layers, so a run takes minutes, not hours,
and each layer costs what it costs in the real model. The vocabulary (and so the tokenizer) is
SmolLM2's, copied from its GGUF: there is no Qwen tokenizer offline. Weights are random and F16;
quantize the result with llama-quantize. Its output is noise: never use it where quality matters.

Usage (the trainer's Python): synthetic_model.py <smollm2.gguf> <out.gguf> [layers]
"""

import sys
from pathlib import Path

import gguf
import numpy as np

from twin_trainer.gguf_export import copy_metadata

LAYERS = 4
HIDDEN = 3584
FEED_FORWARD = 18944
HEADS = 28
KV_HEADS = 4


def main() -> None:
    smollm, out = Path(sys.argv[1]), Path(sys.argv[2])
    layers = int(sys.argv[3]) if len(sys.argv) > 3 else LAYERS
    source = gguf.GGUFReader(str(smollm))
    vocab = len(source.fields["tokenizer.ggml.tokens"].data)
    head_dim = HIDDEN // HEADS
    writer = gguf.GGUFWriter(str(out), "qwen2")
    writer.add_name(f"synthetic Qwen2.5-7B shapes, {layers} layers, random weights")
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_context_length(32768)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    copy_metadata(source, writer, lambda key: key.startswith("tokenizer."))

    rng = np.random.default_rng(0)

    def matrix(rows: int, cols: int) -> np.ndarray:
        # Scaled so activations stay finite through the layers (NaNs would change the kernels' work).
        return (rng.standard_normal((rows, cols), dtype=np.float32) / np.sqrt(cols)).astype(np.float16)

    def vector(size: int, value: float = 0.0) -> np.ndarray:
        return np.full(size, value, dtype=np.float32)

    writer.add_tensor("token_embd.weight", matrix(vocab, HIDDEN))
    writer.add_tensor("output_norm.weight", vector(HIDDEN, 1.0))
    writer.add_tensor("output.weight", matrix(vocab, HIDDEN))
    for i in range(layers):
        block = f"blk.{i}"
        writer.add_tensor(f"{block}.attn_norm.weight", vector(HIDDEN, 1.0))
        writer.add_tensor(f"{block}.attn_q.weight", matrix(HIDDEN, HIDDEN))
        writer.add_tensor(f"{block}.attn_q.bias", vector(HIDDEN))
        writer.add_tensor(f"{block}.attn_k.weight", matrix(KV_HEADS * head_dim, HIDDEN))
        writer.add_tensor(f"{block}.attn_k.bias", vector(KV_HEADS * head_dim))
        writer.add_tensor(f"{block}.attn_v.weight", matrix(KV_HEADS * head_dim, HIDDEN))
        writer.add_tensor(f"{block}.attn_v.bias", vector(KV_HEADS * head_dim))
        writer.add_tensor(f"{block}.attn_output.weight", matrix(HIDDEN, HIDDEN))
        writer.add_tensor(f"{block}.ffn_norm.weight", vector(HIDDEN, 1.0))
        writer.add_tensor(f"{block}.ffn_gate.weight", matrix(FEED_FORWARD, HIDDEN))
        writer.add_tensor(f"{block}.ffn_up.weight", matrix(FEED_FORWARD, HIDDEN))
        writer.add_tensor(f"{block}.ffn_down.weight", matrix(HIDDEN, FEED_FORWARD))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
