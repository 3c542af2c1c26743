"""The GPU checks of full fine-tuning, in one short script (issue 10), for a machine with one CUDA GPU.

1. FSDP2 in one process on one GPU, through the trainer's own sharding: train, save a sharded
   checkpoint, build everything afresh, load it, and continue — the resumed losses must match an
   uninterrupted run's.
2. Tokens/s and peak memory, LoRA versus full, for models built from config with random weights
   (nothing can be downloaded there), next to the trainer's own memory estimate.

  python bench/fsdp/gpu_check.py [--sizes 0.5b,1.5b,3b] [--tokens 4096] [--steps 8]
  python bench/fsdp/gpu_check.py --cpu --sizes tiny      (a dry run of the same code on a CPU)

Needs torch, transformers and peft; prints its figures and one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "trainer"))

from twin_trainer.memory import GIB, ModelShape, estimate_bytes  # noqa: E402
from twin_trainer.sharding import join_cluster, load_sharded, local_value, save_sharded, shard  # noqa: E402

# Qwen2.5 shapes (hidden, intermediate, layers, heads, kv heads, vocabulary), random weights.
SIZES = {
    "tiny": (128, 384, 2, 4, 2, 1024),
    "0.5b": (896, 4864, 24, 14, 2, 151936),
    "1.5b": (1536, 8960, 28, 12, 2, 151936),
    "3b": (2048, 11008, 36, 16, 2, 151936),
    "7b": (3584, 18944, 28, 28, 4, 152064),
}
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build(size: str, device: torch.device, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, Qwen2Config

    hidden, intermediate, layers, heads, kv, vocabulary = SIZES[size]
    config = Qwen2Config(
        hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv, vocab_size=vocabulary, tie_word_embeddings=size in ("tiny", "0.5b", "1.5b", "3b"),
        use_cache=False,
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model


def batches(vocabulary: int, tokens: int, steps: int, device: torch.device) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(0, vocabulary, (1, tokens), generator=generator).to(device) for _ in range(steps)]


def step(model, optimizer, ids: torch.Tensor) -> float:
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    local_value(torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def check_resume(size: str, device: torch.device, tokens: int) -> dict:
    """Six steps straight, versus three, a sharded checkpoint, a fresh model loaded from it, three more."""
    cluster = join_cluster(device)
    compute = torch.bfloat16 if device.type == "cuda" else torch.float32
    data = batches(SIZES[size][5], tokens, 6, cluster.device)

    def fresh():
        model = build(size, torch.device("cpu"), torch.float32)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        shard(model, cluster, compute_dtype=compute)
        return model, torch.optim.AdamW(model.parameters(), lr=1e-4)

    model, optimizer = fresh()
    straight = [step(model, optimizer, ids) for ids in data]
    model, optimizer = fresh()
    first = [step(model, optimizer, ids) for ids in data[:3]]
    with tempfile.TemporaryDirectory() as folder:
        save_sharded(Path(folder), model, optimizer)
        files = sorted(p.name for p in (Path(folder) / "sharded").iterdir())
        model, optimizer = fresh()
        load_sharded(Path(folder), model, optimizer)
    resumed = first + [step(model, optimizer, ids) for ids in data[3:]]
    worst = max(abs(a - b) for a, b in zip(straight, resumed))
    dtensors = all(type(p).__name__ == "DTensor" for p in model.parameters())
    cluster.leave()
    return {"size": size, "straight": straight, "resumed": resumed, "worst_loss_difference": worst,
            "checkpoint_files": files, "dtensors": dtensors}  # fmt: skip


def measure(size: str, method: str, device: torch.device, tokens: int, steps: int) -> dict:
    """Tokens/s and peak memory of `steps` steps (after one warm-up), and the trainer's estimate."""
    compute = torch.bfloat16 if device.type == "cuda" else torch.float32
    if method == "full":
        cluster = join_cluster(device)
        model = build(size, torch.device("cpu"), torch.float32)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        shard(model, cluster, compute_dtype=compute)
    else:
        from peft import LoraConfig, get_peft_model

        cluster = None
        model = build(size, device, compute)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=PROJECTIONS, task_type="CAUSAL_LM"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    data = batches(SIZES[size][5], tokens, steps + 1, device)
    step(model, optimizer, data[0])
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for ids in data[1:]:
        step(model, optimizer, ids)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    hidden, _, layers, _, _, vocabulary = SIZES[size]
    total = sum(p.numel() for p in model.parameters())
    shape = ModelShape(total if method == "full" else total - sum(p.numel() for p in trainable), layers, hidden, vocabulary,
                       sum(p.numel() for p in trainable) if method != "full" else 0)  # fmt: skip
    # Random tokens: every position is learnt (the estimate's supervised share is 1 here).
    estimate = estimate_bytes(shape, method=method, tokens_per_batch=tokens, gradient_checkpointing=True, supervised_share=1.0)
    if cluster is not None:
        cluster.leave()
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "size": size, "method": method, "parameters": shape.parameters, "trainable": sum(p.numel() for p in trainable),
        "tokens_per_second": round(tokens * steps / seconds, 1),
        "peak_gib": round(peak / GIB, 2) if peak else None, "estimate_gib": round(estimate["total"] / GIB, 2),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="0.5b,1.5b,3b")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--cpu", action="store_true", help="a dry run on the CPU (gloo, fp32)")
    arguments = parser.parse_args()
    device = torch.device("cpu" if arguments.cpu else "cuda")
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""))  # fmt: skip
    sizes = arguments.sizes.split(",")
    resume = check_resume(sizes[0], device, min(arguments.tokens, 1024))
    print(f"FSDP2, one process: sharded checkpoint {resume['checkpoint_files']}, parameters DTensors: {resume['dtensors']}")
    print(f"  losses straight {[round(x, 4) for x in resume['straight']]}")
    print(f"  losses resumed  {[round(x, 4) for x in resume['resumed']]} (worst difference {resume['worst_loss_difference']:.2e})")
    rows = []
    for size in sizes:
        for method in ("lora", "full"):
            try:
                row = measure(size, method, device, arguments.tokens, arguments.steps)
            except torch.OutOfMemoryError:
                row = {"size": size, "method": method, "error": "out of memory"}
                torch.cuda.empty_cache()
            rows.append(row)
            print(json.dumps(row))
    print(json.dumps({"resume": resume, "throughput": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
