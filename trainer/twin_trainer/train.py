"""LoRA fine-tuning: setup → train → save, with progress as JSON lines, checkpoints and resume.

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
from .model import load_base, pick_device, pick_dtype, quantization_for
from .packing import group_by_length, pack, pack_greedily, pad

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
    if config.gradient_checkpointing == "on" or (config.gradient_checkpointing == "auto" and device.type == "cuda"):
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


def train(config: TrainConfig, emit: Emit = json_lines()) -> dict[str, Any]:
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights
    from transformers import get_cosine_schedule_with_warmup

    # ── setup ──────────────────────────────────────────────────────────────────
    config.check()
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "config.json").write_text(json.dumps(asdict(config), indent=2))
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    dtype = pick_dtype(config.dtype, device)
    model, tokenizer = load_base(
        config.base,
        dtype=dtype,
        attn_implementation=config.attn_implementation,
        quantization=quantization_for(config.method, device),
    )
    manifest, train_set, eval_set = _label(config, tokenizer)
    if config.batching == "packed":
        rows = pack_greedily(train_set, config.tokens_per_batch)
    else:
        rows = group_by_length(train_set, config.tokens_per_batch, config.seed)
    order = batch_order(rows, config.epochs, config.seed)
    total_steps = config.max_steps or len(order)
    order = (order * math.ceil(total_steps / max(len(order), 1)))[:total_steps]

    if config.method != "qlora":
        model.to(device)
    model = _with_lora(model, config, device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(total_steps * config.warmup_ratio), total_steps)
    step = 0
    checkpoint = _latest_checkpoint(output)
    if checkpoint is not None:
        set_peft_model_state_dict(model, load_peft_weights(str(checkpoint), device=str(device)))
        state = torch.load(checkpoint / "trainer_state.pt", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        random.setstate(state["python_rng"])
        step = state["step"]
    emit({
        "event": "start",
        "steps": total_steps,
        "resumed_from": step,
        "train_examples": len(train_set),
        "eval_examples": len(eval_set),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "dataset": manifest.get("datasetId"),
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
    })

    def save(at: int) -> Path:
        folder = output / f"checkpoint-{at}"
        model.save_pretrained(folder)
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "python_rng": random.getstate(),
                "step": at,
            },
            folder / "trainer_state.pt",
        )
        emit({"event": "checkpoint", "step": at, "path": str(folder)})
        return folder

    # ── train ──────────────────────────────────────────────────────────────────
    model.train()
    started = time.time()
    supervised = 0
    done_this_run = 0
    eval_loss: float | None = None  # the latest, repeated on every log line for a live chart
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    while step < total_steps:
        if (output / "STOP").exists():
            save(step)
            emit({"event": "stopped", "step": step})
            return {"stopped": True, "step": step}
        row = order[step]
        batch = pack(row) if config.batching == "packed" else pad(row, pad_id)
        loss = supervised_loss(model, batch.to(device))
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        done_this_run += 1
        supervised += sum(e.supervised_tokens for e in row)
        elapsed = time.time() - started
        emit({
            "event": "log",
            "step": step,
            "max_steps": total_steps,
            "epoch": round(step / max(len(rows), 1), 3),
            "loss": round(loss.item(), 5),
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
    model.save_pretrained(output / "adapter")
    metrics: dict[str, Any] = {}
    if eval_set:
        metrics = {
            "base": evaluate(model, eval_set, base=True, tokens_per_batch=config.tokens_per_batch, device=device),
            "tuned": evaluate(model, eval_set, tokens_per_batch=config.tokens_per_batch, device=device),
            "eval_examples": len(eval_set),
            "steps": step,
        }
        emit({"event": "eval", "step": step, **metrics["tuned"]["overall"]})
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    emit({
        "event": "done",
        "step": step,
        "adapter": str(output / "adapter"),
        "metrics": {k: metrics[k]["overall"] for k in ("base", "tuned")} if metrics else None,
    })
    return {"stopped": False, "step": step, "metrics": metrics}
