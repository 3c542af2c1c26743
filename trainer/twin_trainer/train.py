"""LoRA fine-tuning: setup → train → save, with progress as JSON lines, checkpoints and resume.

Every event is one JSON object on one line (start, log, checkpoint, eval, done, stopped, failed),
so the bot or a terminal can follow a run that may be on another machine.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .data import check_chat_tokens, label_example, read_examples, read_manifest
from .evaluate import evaluate
from .model import load_base
from .packing import pack, pack_greedily, pad

Emit = Callable[[dict[str, Any]], None]
LINEAR_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class TrainConfig:
    base: str = ""  # a GGUF file or an HF folder: the same model that is served
    dataset: str = ""  # the folder `twin dataset --out` wrote
    output: str = "runs/latest"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    use_rslora: bool = False
    learning_rate: float = 2e-4
    warmup_ratio: float = 0.03
    epochs: float = 2.0
    max_steps: int = 0  # 0: from epochs
    tokens_per_batch: int = 2048
    batching: str = "packed"  # or "padded" (length-grouped), for comparison
    eval_every: int = 50
    save_every: int = 50
    seed: int = 0
    attn_implementation: str = "sdpa"
    extra: dict[str, Any] = field(default_factory=dict)


def json_lines(stream=sys.stdout) -> Emit:
    def emit(event: dict[str, Any]) -> None:
        stream.write(json.dumps({"time": round(time.time(), 3), **event}, ensure_ascii=False) + "\n")
        stream.flush()

    return emit


def _batches(rows_per_epoch: list[list[Any]], epochs: float, seed: int) -> list[list[Any]]:
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


def _latest_checkpoint(output: Path) -> Path | None:
    checkpoints = sorted(output.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return checkpoints[-1] if checkpoints else None


def train(config: TrainConfig, emit: Emit = json_lines()) -> dict[str, Any]:
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from peft.utils import load_peft_weights
    from transformers import get_cosine_schedule_with_warmup

    # ── setup ──────────────────────────────────────────────────────────────────
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "config.json").write_text(json.dumps(asdict(config), indent=2))
    torch.manual_seed(config.seed)
    dataset = Path(config.dataset)
    manifest = read_manifest(dataset)
    model, tokenizer = load_base(config.base, attn_implementation=config.attn_implementation)
    check_chat_tokens(tokenizer)
    train_set = [label_example(e, tokenizer) for e in read_examples(dataset / "train.jsonl")]
    eval_set = [label_example(e, tokenizer) for e in read_examples(dataset / "eval.jsonl")]
    train_set = [e for e in train_set if e.supervised_tokens > 0]
    too_long = [e for e in train_set if len(e.input_ids) > config.tokens_per_batch]
    if too_long:
        raise ValueError(
            f"{len(too_long)} examples exceed tokens_per_batch={config.tokens_per_batch} "
            f"(longest {max(len(e.input_ids) for e in too_long)}); raise it or rebuild with a lower --max-tokens"
        )
    if config.batching == "packed":
        rows = pack_greedily(train_set, config.tokens_per_batch)
    else:
        # Length-grouped padding: neighbours in length share a batch, as the reference write-up did.
        by_length = sorted(train_set, key=lambda e: len(e.input_ids))
        rows, row, longest = [], [], 0
        for example in by_length:
            longest_after = max(longest, len(example.input_ids))
            if row and longest_after * (len(row) + 1) > config.tokens_per_batch:
                rows.append(row)
                row, longest_after = [], len(example.input_ids)
            row.append(example)
            longest = longest_after
        if row:
            rows.append(row)
    order = _batches(rows, config.epochs, config.seed)
    total_steps = config.max_steps or len(order)
    order = (order * math.ceil(total_steps / max(len(order), 1)))[:total_steps]

    model.config.use_cache = False
    model = get_peft_model(
        model,
        LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=LINEAR_PROJECTIONS,
            use_rslora=config.use_rslora,
            task_type="CAUSAL_LM",
        ),
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(total_steps * config.warmup_ratio), total_steps)
    step = 0
    checkpoint = _latest_checkpoint(output)
    if checkpoint is not None:
        set_peft_model_state_dict(model, load_peft_weights(str(checkpoint)))
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
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    while step < total_steps:
        if (output / "STOP").exists():
            save(step)
            emit({"event": "stopped", "step": step})
            return {"stopped": True, "step": step}
        row = order[step]
        batch = pack(row) if config.batching == "packed" else pad(row, pad_id)
        loss = model(**batch.model_inputs(), use_cache=False).loss
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
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
            "eta_seconds": round(elapsed / step * (total_steps - step), 1) if step else None,
        })
        if config.eval_every and step % config.eval_every == 0 and eval_set:
            emit({"event": "eval", "step": step, **evaluate(model, eval_set)["overall"]})
        if config.save_every and step % config.save_every == 0:
            save(step)

    # ── save ───────────────────────────────────────────────────────────────────
    model.save_pretrained(output / "adapter")
    metrics = {"base": evaluate(model, eval_set, base=True), "tuned": evaluate(model, eval_set)} if eval_set else {}
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    emit({"event": "done", "step": step, "adapter": str(output / "adapter"), "metrics": metrics.get("tuned", {}).get("overall")})
    return {"stopped": False, "step": step, "metrics": metrics}
