"""The GPU checks of full fine-tuning, in one short script (issue 10), for a machine with one CUDA GPU.

1. FSDP2 in one process on one GPU, through the trainer's own sharding: train, save a sharded
   checkpoint, build everything afresh, load it, and continue — the resumed losses must match an
   uninterrupted run's.
2. Tokens/s and peak memory, LoRA versus full, for models built from config with random weights
   (nothing can be downloaded there), next to the trainer's own memory estimate.

  python bench/fsdp/gpu_check.py [--sizes 7b,3b,1.5b,0.5b] [--methods lora,full,full-foreach] [--tokens 4096] [--steps 8] [--budget 300] [--out DIR]
  python bench/fsdp/gpu_check.py --cpu --sizes tiny      (a dry run of the same code on a CPU)

Needs torch, transformers and peft; prints its figures, and writes each result as one JSON line to
DIR/gpu_check.jsonl as soon as it has it (so a run cut short by its lease still reports what it did).
A part that fails is recorded with its error and the rest goes on; once --budget seconds have
passed, the remaining measurements are recorded as skipped.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "trainer"))

from twin_trainer.data import IGNORE_INDEX  # noqa: E402
from twin_trainer.forward import supervised_loss  # noqa: E402
from twin_trainer.memory import GIB, ModelShape, estimate_bytes  # noqa: E402
from twin_trainer.packing import Batch  # noqa: E402
from twin_trainer.train import make_optimizer  # noqa: E402
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


SUPERVISED_SHARE = 0.5  # the trainer's estimate assumes half the tokens are learnt, as in chats


def batches(vocabulary: int, tokens: int, steps: int, device: torch.device) -> list[Batch]:
    """Rows of random tokens whose second half is learnt, as the trainer's packed rows come."""
    generator = torch.Generator().manual_seed(1)
    rows = []
    for _ in range(steps):
        ids = torch.randint(0, vocabulary, (1, tokens), generator=generator)
        labels = ids.clone()
        labels[:, : int(tokens * (1 - SUPERVISED_SHARE))] = IGNORE_INDEX
        rows.append(Batch(ids, labels, None, None, tokens, 0.0).to(device))
    return rows


def step(model, optimizer, batch: Batch) -> float:
    """One optimizer step through the trainer's own forward and loss (logits only where learnt)."""
    loss = supervised_loss(model, batch)
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
        model = build(size, cluster.device, torch.float32)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        shard(model, cluster, compute_dtype=compute)
        return model, make_optimizer(list(model.parameters()), 1e-4, cluster.device)

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
    """Tokens/s and memory of `steps` steps (after one warm-up), and the trainer's estimate.

    Memory in three readings: the weights once built (and sharded), what stays resident after the
    warm-up step (weights, gradients, optimizer states), and the peak during the timed steps.
    Both methods use the trainer's optimizer (AdamW, fused on CUDA); `full-foreach` is `full` with
    PyTorch's default AdamW on CUDA instead, for comparison.
    """
    compute = torch.bfloat16 if device.type == "cuda" else torch.float32
    gc.collect()  # models hold reference cycles: free the last measurement's before reading memory
    baseline = torch.cuda.memory_allocated() if device.type == "cuda" else 0
    allocated = lambda: round((torch.cuda.memory_allocated() - baseline) / GIB, 2) if device.type == "cuda" else None  # noqa: E731
    if method.startswith("full"):
        cluster = join_cluster(device)
        model = build(size, cluster.device, torch.float32)  # fp32 master weights; FSDP2 shards them in place
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        shard(model, cluster, compute_dtype=compute)
    else:
        from peft import LoraConfig, get_peft_model

        cluster = None
        model = build(size, device, compute)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=PROJECTIONS, task_type="CAUSAL_LM"))
    gc.collect()  # the unsharded originals FSDP2 copied from
    weights = allocated()
    trainable = [p for p in model.parameters() if p.requires_grad]
    if method == "full-foreach":
        optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.0, foreach=True)
    else:
        optimizer = make_optimizer(trainable, 1e-4, device)
    data = batches(SIZES[size][5], tokens, steps + 1, device)
    step(model, optimizer, data[0])
    resident = allocated()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for ids in data[1:]:
        step(model, optimizer, ids)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() - baseline if device.type == "cuda" else None
    hidden, _, layers, _, _, vocabulary = SIZES[size]
    total = sum(p.numel() for p in model.parameters())
    full = method.startswith("full")
    shape = ModelShape(total if full else total - sum(p.numel() for p in trainable), layers, hidden, vocabulary,
                       0 if full else sum(p.numel() for p in trainable))  # fmt: skip
    estimate = estimate_bytes(shape, method="full" if full else "lora", tokens_per_batch=tokens,
                              gradient_checkpointing=True, supervised_share=SUPERVISED_SHARE)  # fmt: skip
    if cluster is not None:
        cluster.leave()
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "size": size, "method": method, "parameters": shape.parameters, "trainable": sum(p.numel() for p in trainable),
        "tokens_per_second": round(tokens * steps / seconds, 1), "baseline_gib": round(baseline / GIB, 2), "weights_gib": weights, "resident_gib": resident,
        "peak_gib": round(peak / GIB, 2) if peak else None, "estimate_gib": round(estimate["total"] / GIB, 2),
        "estimate_parts_gib": {part: round(value / GIB, 2) for part, value in estimate.items() if part != "total"},
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="7b,3b,1.5b,0.5b")
    parser.add_argument("--resume-size", default="0.5b", help="the model of the checkpoint check")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--methods", default="lora,full", help="lora, full, full-foreach (PyTorch's default AdamW)")
    parser.add_argument("--budget", type=float, default=300, help="seconds after which no new measurement starts")
    parser.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for gpu_check.jsonl")
    parser.add_argument("--cpu", action="store_true", help="a dry run on the CPU (gloo, fp32)")
    arguments = parser.parse_args()
    device = torch.device("cpu" if arguments.cpu else "cuda")
    started = time.monotonic()
    results = Path(arguments.out) / "gpu_check.jsonl"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("")

    def record(row: dict) -> None:
        print(json.dumps(row), flush=True)
        with results.open("a") as file:
            file.write(json.dumps(row) + "\n")

    def attempt(part, *args) -> dict:
        try:
            return part(*args)
        except torch.OutOfMemoryError as error:
            return {"error": "out of memory", "detail": str(error).splitlines()[0]}
        except Exception as error:  # noqa: BLE001 - recorded, and the other parts still run
            return {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc(limit=6)}
        finally:
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()

    import peft
    import transformers

    machine = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
               "device": str(device)}  # fmt: skip
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(0)
        machine |= {"gpu": properties.name, "gpu_memory_gib": round(properties.total_memory / GIB, 1),
                    "cuda": torch.version.cuda, "nccl": ".".join(map(str, torch.cuda.nccl.version()))}  # fmt: skip
    record({"machine": machine})
    sizes = arguments.sizes.split(",")
    resume = attempt(check_resume, arguments.resume_size, device, min(arguments.tokens, 1024))
    record({"resume": resume})
    if "straight" in resume:
        print(f"  losses straight {[round(x, 4) for x in resume['straight']]}")
        print(f"  losses resumed  {[round(x, 4) for x in resume['resumed']]} (worst {resume['worst_loss_difference']:.2e})")
    for size in sizes:
        for method in arguments.methods.split(","):
            if time.monotonic() - started > arguments.budget:
                record({"size": size, "method": method, "skipped": f"past the {arguments.budget:.0f} s budget"})
                continue
            row = attempt(measure, size, method, device, arguments.tokens, arguments.steps)
            record({"size": size, "method": method} | row)
    record({"done_after_s": round(time.monotonic() - started, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
