"""Fine-tuning (LoRA, QLoRA, or every weight with FSDP2): setup → train → save, with progress as
JSON lines, checkpoints and resume.

Every event is one JSON object on one line (start, log, eval, checkpoint, done, stopped, failed),
so the bot or a terminal can follow a run that may be on another machine.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from .config import TrainConfig
from .data import LabelledExample, check_chat_tokens, label_example, load_dataset
from .evaluate import evaluate
from .forward import supervised_loss
from .memory import GIB, check_fits, model_shape
from .model import load_base, pick_device, pick_dtype, quantization_for
from .packing import group_by_length, pack, pack_greedily, pad
from .privacy import private_dir
from .sharding import Cluster, join_cluster, load_sharded, local_value, save_full_model, save_sharded, shard

Emit = Callable[[dict[str, Any]], None]
LINEAR_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def json_lines(stream=sys.stdout) -> Emit:
    def emit(event: dict[str, Any]) -> None:
        stream.write(json.dumps({"time": round(time.time(), 3), **event}, ensure_ascii=False) + "\n")
        stream.flush()

    return emit


def batch_order(rows_per_epoch: list[list[Any]], epochs: float, seed: int) -> list[list[Any]]:
    """The run's whole batch order, fixed by the seed, so a resumed run continues the same sequence."""
    order: list[list[Any]] = []
    whole = math.ceil(epochs)
    for epoch in range(whole):
        rows = list(rows_per_epoch)
        random.Random(seed + epoch).shuffle(rows)
        if epoch == whole - 1 and epochs < whole:
            rows = rows[: max(1, round(len(rows) * (epochs - epoch)))]
        order.extend(rows)
    return order


def eval_subset(examples: list[LabelledExample], limit: int, seed: int) -> list[LabelledExample]:
    """All held-out examples, or a fixed random `limit` of them (same ones for base and tuned)."""
    if not limit or len(examples) <= limit:
        return examples
    return sorted(random.Random(seed).sample(examples, limit), key=lambda e: e.example_id)


def _latest_checkpoint(output: Path) -> Path | None:
    checkpoints = sorted(output.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return checkpoints[-1] if checkpoints else None


def _label(config: TrainConfig, tokenizer: Any) -> tuple[dict[str, Any], list[LabelledExample], list[LabelledExample]]:
    dataset = load_dataset(config.dataset, os.environ.get("DATABASE_URL"))
    check_chat_tokens(tokenizer)
    train_set = [label_example(e, tokenizer) for e in dataset.train]
    train_set = [e for e in train_set if e.supervised_tokens > 0]
    eval_set = [label_example(e, tokenizer) for e in dataset.eval]
    eval_set = eval_subset([e for e in eval_set if e.supervised_tokens > 0], config.max_eval_examples, config.seed)
    if not train_set:
        raise ValueError(f"dataset {config.dataset}: no training example has a trained turn")
    too_long = [e for e in train_set if len(e.input_ids) > config.tokens_per_batch]
    if too_long:
        raise ValueError(
            f"{len(too_long)} examples exceed tokens_per_batch={config.tokens_per_batch} "
            f"(longest {max(len(e.input_ids) for e in too_long)}); raise it or rebuild with a lower --max-tokens"
        )
    return dataset.manifest, train_set, eval_set


def _with_lora(model: Any, config: TrainConfig, device: torch.device) -> Any:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model.config.use_cache = False
    if config.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if uses_checkpointing(config, device):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return get_peft_model(
        model,
        LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=LINEAR_PROJECTIONS,
            use_rslora=config.use_rslora,
            use_dora=config.use_dora,
            task_type="CAUSAL_LM",
        ),
    )


def _silent(event: dict[str, Any]) -> None:
    """Events of the processes other than rank 0: one voice per run."""


def make_optimizer(parameters: list[torch.nn.Parameter], learning_rate: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW, fused on CUDA. PyTorch's default there (foreach) holds full-size fp32 temporaries of the
    parameters during the step: on an H200, 7B full fine-tuning peaked at 117.9 GiB fused (the
    estimate says 118.2) and ran out of 139.8 GiB with foreach (bench/fsdp/gpu_check.py)."""
    return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0, fused=True if device.type == "cuda" else None)


def uses_checkpointing(config: TrainConfig, device: torch.device) -> bool:
    return config.gradient_checkpointing == "on" or (config.gradient_checkpointing == "auto" and device.type == "cuda")


def memory_estimate(config: TrainConfig, gpus: int) -> dict[str, float] | None:
    """Bytes per GPU by part; raises MemoryBudgetError, before anything loads, when the run cannot fit.

    The budget is `gpu_memory_gb` (the card a config is written for) or the GPU's own memory.
    """
    # A config written for a GPU is estimated for it, even where it is only being checked.
    device = torch.device("cuda") if config.device.startswith("cuda") else pick_device(config.device)
    budget = config.gpu_memory_gb
    if not budget:
        if device.type != "cuda":
            return None
        budget = torch.cuda.get_device_properties(device).total_memory / 1e9
    shape = model_shape(config.base, config.lora_r if config.method != "full" else 0)
    return check_fits(
        shape,
        method=config.method,
        tokens_per_batch=config.tokens_per_batch,
        gradient_checkpointing=uses_checkpointing(config, device),
        gpus=gpus,
        gpu_memory_gb=budget,
    )


def _fully_trainable(model: Any, config: TrainConfig, cluster: Cluster, compute_dtype: torch.dtype) -> Any:
    """Every weight trains; FSDP2 shards them (and their gradients and optimizer states) over the processes."""
    model.config.use_cache = False
    if uses_checkpointing(config, cluster.device):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return shard(model, cluster, compute_dtype=compute_dtype)


def train(config: TrainConfig, emit: Emit = json_lines()) -> dict[str, Any]:
    # ── setup ──────────────────────────────────────────────────────────────────
    config.check()
    full = config.method == "full"
    estimate = memory_estimate(config, int(os.environ.get("WORLD_SIZE", "1")) if full else 1)
    output = Path(config.output)
    private_dir(output)
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    dtype = pick_dtype(config.dtype, device)
    cluster = join_cluster(device) if full else None
    try:
        return _train(config, emit if cluster is None or cluster.main else _silent, output, device, dtype, cluster, estimate)
    finally:
        if cluster is not None:
            cluster.leave()


def _train(
    config: TrainConfig,
    emit: Emit,
    output: Path,
    device: torch.device,
    dtype: torch.dtype,
    cluster: Cluster | None,
    estimate: dict[str, float] | None,
) -> dict[str, Any]:
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights
    from transformers import get_cosine_schedule_with_warmup

    full = cluster is not None
    main = cluster is None or cluster.main
    processes = cluster.world_size if cluster else 1
    rank = cluster.rank if cluster else 0
    if full:
        device = cluster.device
    if main:
        (output / "config.json").write_text(json.dumps(asdict(config), indent=2))
    model, tokenizer = load_base(
        config.base,
        # Full fine-tuning keeps fp32 master weights; FSDP computes in `dtype`.
        dtype=torch.float32 if full else dtype,
        attn_implementation=config.attn_implementation,
        quantization=quantization_for(config.method, device),
    )
    manifest, train_set, eval_set = _label(config, tokenizer)
    if config.batching == "packed":
        rows = pack_greedily(train_set, config.tokens_per_batch)
    else:
        rows = group_by_length(train_set, config.tokens_per_batch, config.seed)
    order = batch_order(rows, config.epochs, config.seed)
    # One step takes one row per process (data parallel); the order is the same on every process.
    total_steps = config.max_steps or math.ceil(len(order) / processes)
    needed = total_steps * processes
    order = (order * math.ceil(needed / max(len(order), 1)))[:needed]

    if full:
        model = _fully_trainable(model, config, cluster, dtype)
    else:
        if config.method != "qlora":
            model.to(device)
        model = _with_lora(model, config, device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(trainable, config.learning_rate, device)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(total_steps * config.warmup_ratio), total_steps)
    step = 0
    base_metrics: dict[str, Any] | None = None
    checkpoint = _latest_checkpoint(output)
    if checkpoint is not None:
        if full:
            load_sharded(checkpoint, model, optimizer)
        else:
            set_peft_model_state_dict(model, load_peft_weights(str(checkpoint), device=str(device)))
        state = torch.load(checkpoint / "trainer_state.pt", weights_only=False)
        if not full:
            optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        random.setstate(state["python_rng"])
        step = state["step"]
        base_metrics = state.get("base_metrics")
    if full and base_metrics is None and eval_set:
        # No adapter to switch off later: the base is measured before the first step.
        base_metrics = evaluate(model, eval_set, tokens_per_batch=config.tokens_per_batch, device=device)
    emit({
        "event": "start",
        "steps": total_steps,
        "resumed_from": step,
        "method": config.method,
        "processes": processes,
        "train_examples": len(train_set),
        "eval_examples": len(eval_set),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "dataset": manifest.get("datasetId"),
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "memory_estimate_gib": round(estimate["total"] / GIB, 2) if estimate else None,
    })

    def save(at: int) -> Path:
        folder = output / f"checkpoint-{at}"
        state = {
            "scheduler": scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "step": at,
            "base_metrics": base_metrics,
        }
        if full:
            save_sharded(folder, model, optimizer)  # every process writes its own shards
        else:
            model.save_pretrained(folder)
            state["optimizer"] = optimizer.state_dict()
        if main:
            torch.save(state, folder / "trainer_state.pt")
        if full:
            torch.distributed.barrier()
        emit({"event": "checkpoint", "step": at, "path": str(folder)})
        return folder

    def stop_requested() -> bool:
        stop = (output / "STOP").exists()
        return cluster.any(stop) if cluster else stop

    # ── train ──────────────────────────────────────────────────────────────────
    model.train()
    started = time.time()
    supervised = 0
    done_this_run = 0
    eval_loss: float | None = None  # the latest, repeated on every log line for a live chart
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    while step < total_steps:
        if stop_requested():
            save(step)
            emit({"event": "stopped", "step": step})
            return {"stopped": True, "step": step}
        step_rows = order[step * processes : (step + 1) * processes]
        row = step_rows[rank]
        batch = pack(row) if config.batching == "packed" else pad(row, pad_id)
        loss = supervised_loss(model, batch.to(device))
        loss.backward()
        grad_norm = local_value(torch.nn.utils.clip_grad_norm_(trainable, 1.0))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        done_this_run += 1
        supervised += sum(e.supervised_tokens for r in step_rows for e in r)
        elapsed = time.time() - started
        emit({
            "event": "log",
            "step": step,
            "max_steps": total_steps,
            "epoch": round(step * processes / max(len(rows), 1), 3),
            "loss": round(cluster.mean(loss.item()) if cluster else loss.item(), 5),
            "lr": scheduler.get_last_lr()[0],
            "grad_norm": round(float(grad_norm), 4),
            "supervised_tokens_per_second": round(supervised / max(elapsed, 1e-9), 1),
            "padding_fraction": round(batch.padding_fraction, 4),
            "eval_loss": eval_loss,
            "eta_seconds": round(elapsed / done_this_run * (total_steps - step), 1),
        })
        if config.eval_every and step % config.eval_every == 0 and eval_set and step < total_steps:
            result = evaluate(model, eval_set, tokens_per_batch=config.tokens_per_batch, device=device)
            eval_loss = round(result["overall"]["loss"], 5)
            emit({"event": "eval", "step": step, **result["overall"]})
        if config.save_every and step % config.save_every == 0:
            save(step)

    # ── save ───────────────────────────────────────────────────────────────────
    if not (output / f"checkpoint-{step}").exists():
        save(step)  # a rerun of a finished run resumes here and only re-evaluates
    if full:
        save_full_model(model, tokenizer, output / "model", cluster)
    else:
        model.save_pretrained(output / "adapter")
    metrics: dict[str, Any] = {}
    if eval_set:
        tuned = evaluate(model, eval_set, tokens_per_batch=config.tokens_per_batch, device=device)
        if not full:
            base_metrics = evaluate(model, eval_set, base=True, tokens_per_batch=config.tokens_per_batch, device=device)
        metrics = {"base": base_metrics, "tuned": tuned, "eval_examples": len(eval_set), "steps": step}
        emit({"event": "eval", "step": step, **metrics["tuned"]["overall"]})
    if main:
        (output / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    emit({
        "event": "done",
        "step": step,
        "method": config.method,
        **({"model": str(output / "model")} if full else {"adapter": str(output / "adapter")}),
        "metrics": {k: metrics[k]["overall"] for k in ("base", "tuned")} if metrics else None,
    })
    return {"stopped": False, "step": step, "metrics": metrics}
