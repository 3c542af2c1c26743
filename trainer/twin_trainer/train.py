"""Fine-tuning (LoRA, QLoRA, or every weight with FSDP2) as one recipe: setup → train → save → cleanup,
with progress as JSON lines, checkpoints and resume.

Every event is one JSON object on one line (phase, start, log, eval, checkpoint, done, stopped,
failed), so the bot or a terminal can follow a run that may be on another machine. `phase` events
say what the run does between steps (loading, tokenizing, evaluating, with the evaluation passes it
makes): the app shows them on its bar and times them for its estimates.

The recipe is the same for every method. Where LoRA and full fine-tuning differ (how the base is
loaded and made trainable, what a checkpoint holds, when the base is measured, what the result is)
it asks the run's method: LoraFineTuning or FullFineTuning below, one method each.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from . import environment
from .config import TrainConfig, checkpoint_share
from .data import LabelledExample, check_chat_tokens, label_example, load_dataset
from .evaluate import evaluate
from .forward import resolve_attention, supervised_loss
from .memory import GIB, check_fits, layers_to_checkpoint, model_shape
from .model import load_base, pick_device, pick_dtype, quantization_for
from .output import quiet_libraries
from .packing import group_by_length, pack, pack_greedily, pad, ungrouped
from .privacy import private_dir
from .sharding import (
    Cluster,
    SingleProcess,
    join_cluster,
    load_sharded,
    local_value,
    save_full_model,
    save_sharded,
    shard,
)

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


def steps_for_tokens(order: list[list[Any]], processes: int, budget: int) -> int:
    """The fewest steps (one row per process each, cycling through `order`) whose rows hold at least
    `budget` trained tokens: runs with rows of different sizes then learn the same number of tokens."""
    if not order:
        return 0
    per_pass = sum(e.supervised_tokens for row in order for e in row)
    if per_pass <= 0:
        raise ValueError("the training rows hold no trained token")
    learnt, steps = 0, 0
    while learnt < budget:
        for process in range(processes):
            row = order[(steps * processes + process) % len(order)]
            learnt += sum(e.supervised_tokens for e in row)
        steps += 1
    return steps


def eval_subset(examples: list[LabelledExample], limit: int, seed: int) -> list[LabelledExample]:
    """All held-out examples, or a fixed random `limit` of them (same ones for base and tuned)."""
    if not limit or len(examples) <= limit:
        return examples
    return sorted(random.Random(seed).sample(examples, limit), key=lambda e: e.example_id)


def make_optimizer(parameters: list[torch.nn.Parameter], learning_rate: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW, fused on CUDA. PyTorch's default there (foreach) holds full-size fp32 temporaries of the
    parameters during the step: on an H200, 7B full fine-tuning peaked at 117.9 GiB fused (the
    estimate says 118.2) and ran out of 139.8 GiB with foreach (bench/fsdp/gpu_check.py)."""
    return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0, fused=True if device.type == "cuda" else None)


# Of a GPU's memory, what `gradient_checkpointing=auto` plans to fill: the estimate came within 4%
# of the measured peak, and the CUDA context and the allocator's fragments need the rest.
PLANNED_SHARE = 0.9


@dataclass
class MemoryPlan:
    estimate: dict[str, float] | None  # bytes per GPU by part; None where there is no budget (CPU)
    checkpointed_layers: int | None  # None: decided once the model is loaded (no shape was read)


def checkpointed_layers(config: TrainConfig, device: torch.device, layers: int, fitting: int | None) -> int:
    """How many decoder layers recompute their activations; `fitting` is the fewest the budget allows."""
    setting = config.gradient_checkpointing
    if setting == "on":
        return layers
    if setting == "off":
        return 0
    if setting == "auto":
        if device.type != "cuda":
            return 0
        return layers if fitting is None else fitting
    return round(checkpoint_share(setting) * layers)


def memory_plan(config: TrainConfig, gpus: int) -> MemoryPlan:
    """The estimate and the layers to checkpoint; raises MemoryBudgetError, before anything loads,
    when the run cannot fit. The budget is `gpu_memory_gb` (the card a config is written for) or the
    GPU's own memory."""
    # A config written for a GPU is estimated for it, even where it is only being checked.
    device = torch.device("cuda") if config.device.startswith("cuda") else pick_device(config.device)
    budget = config.gpu_memory_gb
    if not budget:
        if device.type != "cuda":
            return MemoryPlan(None, None)
        budget = torch.cuda.get_device_properties(device).total_memory / 1e9
    shape = model_shape(config.base, config.lora_r if config.method != "full" else 0)
    sizes = dict(method=config.method, tokens_per_batch=config.tokens_per_batch, gpus=gpus, logits=config.loss_implementation)
    fitting = layers_to_checkpoint(shape, budget_bytes=budget * 1e9 * PLANNED_SHARE, **sizes)
    layers = checkpointed_layers(config, device, shape.layers, fitting)
    estimate = check_fits(shape, gradient_checkpointing=layers > 0, checkpointed_layers=layers, gpu_memory_gb=budget, **sizes)
    return MemoryPlan(estimate, layers)


def memory_estimate(config: TrainConfig, gpus: int) -> dict[str, float] | None:
    """Bytes per GPU by part (memory_plan's estimate)."""
    return memory_plan(config, gpus).estimate


def _latest_checkpoint(output: Path) -> Path | None:
    checkpoints = sorted(output.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return checkpoints[-1] if checkpoints else None


def _label(config: TrainConfig, tokenizer: Any) -> tuple[dict[str, Any], list[LabelledExample], list[LabelledExample]]:
    dataset = load_dataset(config.dataset, environment.database_url())
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


def _silent(event: dict[str, Any]) -> None:
    """Events of the processes other than rank 0: one voice per run."""


def decoder_layers(model: Any) -> list[torch.nn.Module]:
    """The model's decoder layers, in order (transformers marks them as checkpointable layers)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [module for module in model.modules() if isinstance(module, GradientCheckpointingLayer)]


def _checkpointed(model: Any, config: TrainConfig, device: torch.device, planned: int | None) -> None:
    """Gradient checkpointing on the first `planned` decoder layers (by the memory plan, or by the
    setting once the layers are counted): their activations are recomputed, memory saved."""
    layers = decoder_layers(model)
    count = planned if planned is not None else checkpointed_layers(config, device, len(layers), None)
    if count <= 0:
        return
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for layer in layers[count:]:
        layer.gradient_checkpointing = False


def compiles(config: TrainConfig, device: torch.device) -> bool:
    """Whether the run compiles its decoder layers: `auto` for LoRA on a GPU (QLoRA's 4-bit layers
    and FSDP's sharded ones were not measured compiled)."""
    if config.compile_layers == "auto":
        return device.type == "cuda" and config.method == "lora"
    return config.compile_layers == "on"


# Compiled layers see rows padded to a multiple of this many tokens (packing.pack).
COMPILED_ROW_MULTIPLE = 64


def compile_layers(model: Any) -> None:
    """torch.compile each decoder layer in place: fused elementwise work, one graph per layer shape."""
    for layer in decoder_layers(model):
        layer.compile()


# ── where LoRA and full fine-tuning differ ─────────────────────────────────────


class LoraFineTuning:
    """LoRA and QLoRA: the base stays frozen, in this one process, and an adapter trains. A checkpoint
    is the adapter with the optimizer's state; the result is the adapter, and the base is measured at
    the end, with the adapter switched off."""

    result = "adapter"  # the folder under `output`, and the done event's key for it
    measures_base_first = False

    def __init__(self, config: TrainConfig, checkpointed: int | None = None) -> None:
        self.config = config
        self.checkpointed = checkpointed

    def processes_launched(self) -> int:
        return 1

    def join(self, device: torch.device) -> SingleProcess:
        return SingleProcess(device)

    def base_dtype(self, dtype: torch.dtype) -> torch.dtype:
        return dtype

    def make_trainable(self, model: Any, world: SingleProcess, dtype: torch.dtype) -> Any:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        config = self.config
        model.config.use_cache = False
        if config.method == "qlora":  # the 4-bit base was placed on its GPU as it loaded
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        else:
            model.to(world.device)
        _checkpointed(model, config, world.device, self.checkpointed)
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

    def load_checkpoint(
        self, folder: Path, model: Any, optimizer: torch.optim.Optimizer, state: dict[str, Any], world: SingleProcess
    ) -> None:
        from peft import set_peft_model_state_dict
        from peft.utils import load_peft_weights

        set_peft_model_state_dict(model, load_peft_weights(str(folder), device=str(world.device)))
        optimizer.load_state_dict(state["optimizer"])

    def save_checkpoint(self, folder: Path, model: Any, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        model.save_pretrained(folder)
        state["optimizer"] = optimizer.state_dict()  # small: the adapter's parameters only

    def save_result(self, model: Any, tokenizer: Any, folder: Path, world: SingleProcess) -> None:
        model.save_pretrained(folder)


class FullFineTuning:
    """Every weight trains, sharded with FSDP2 over the processes torchrun started (or a world of one):
    fp32 master weights, computed in the run's dtype. A checkpoint is each process's shards of the
    weights and optimizer states; the result is the whole model, gathered. There is no adapter to
    switch off later, so the base is measured before the first step."""

    result = "model"
    measures_base_first = True

    def __init__(self, config: TrainConfig, checkpointed: int | None = None) -> None:
        self.config = config
        self.checkpointed = checkpointed

    def processes_launched(self) -> int:
        return environment.world_size()

    def join(self, device: torch.device) -> Cluster:
        return join_cluster(device)

    def base_dtype(self, dtype: torch.dtype) -> torch.dtype:
        return torch.float32  # master weights; FSDP computes in `dtype`

    def make_trainable(self, model: Any, world: Cluster, dtype: torch.dtype) -> Any:
        model.config.use_cache = False
        _checkpointed(model, self.config, world.device, self.checkpointed)
        return shard(model, world, compute_dtype=dtype)

    def load_checkpoint(
        self, folder: Path, model: Any, optimizer: torch.optim.Optimizer, state: dict[str, Any], world: Cluster
    ) -> None:
        load_sharded(folder, model, optimizer)  # resharded when the number of processes changed

    def save_checkpoint(self, folder: Path, model: Any, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        save_sharded(folder, model, optimizer)  # every process writes its own shards

    def save_result(self, model: Any, tokenizer: Any, folder: Path, world: Cluster) -> None:
        save_full_model(model, tokenizer, folder, world)


# ── the recipe ─────────────────────────────────────────────────────────────────


class Recipe:
    """One run: `setup` loads and resumes, `train` steps, `save` writes the result and the metrics,
    `cleanup` leaves the process group. Creating it refuses a run that cannot fit before anything loads."""

    def __init__(self, config: TrainConfig, emit: Emit) -> None:
        config.check()
        self.config = config
        method = FullFineTuning if config.method == "full" else LoraFineTuning
        plan = memory_plan(config, method(config).processes_launched())
        self.method = method(config, plan.checkpointed_layers)
        self.estimate = plan.estimate
        self.output = Path(config.output)
        private_dir(self.output)
        torch.manual_seed(config.seed)
        device = pick_device(config.device)
        self.dtype = pick_dtype(config.dtype, device)
        self.world = self.method.join(device)  # the last step here: cleanup() leaves it
        self.device = self.world.device  # a process of a launched run takes its own GPU
        self.emit = emit if self.world.main else _silent

    # ── setup ──────────────────────────────────────────────────────────────────
    def setup(self) -> None:
        from transformers import get_cosine_schedule_with_warmup

        config, processes = self.config, self.world.world_size
        if self.world.main:
            (self.output / "config.json").write_text(json.dumps(asdict(config), indent=2))
        quiet_libraries()
        self.emit({"event": "phase", "phase": "loading"})
        base, self.tokenizer = load_base(
            config.base,
            dtype=self.method.base_dtype(self.dtype),
            attn_implementation=resolve_attention(config.attn_implementation, self.device.type == "cuda"),
            quantization=quantization_for(config.method, self.device),
        )
        self.emit({"event": "phase", "phase": "tokenizing"})
        manifest, self.train_set, self.eval_set = _label(config, self.tokenizer)
        if config.batching == "packed":
            self.rows = pack_greedily(self.train_set, config.tokens_per_batch)
        elif config.batching == "ungrouped":
            self.rows = ungrouped(self.train_set, config.tokens_per_batch, config.seed)
        else:
            self.rows = group_by_length(self.train_set, config.tokens_per_batch, config.seed)
        order = batch_order(self.rows, config.epochs, config.seed)
        # One step takes one row per process (data parallel); the order is the same on every process.
        if config.max_trained_tokens:
            self.total_steps = steps_for_tokens(order, processes, config.max_trained_tokens)
        else:
            self.total_steps = config.max_steps or math.ceil(len(order) / processes)
        needed = self.total_steps * processes
        self.order = (order * math.ceil(needed / max(len(order), 1)))[:needed]

        self.model = self.method.make_trainable(base, self.world, self.dtype)
        self.row_multiple = 1
        if compiles(config, self.device):
            compile_layers(self.model)
            self.row_multiple = COMPILED_ROW_MULTIPLE
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.trainable, config.learning_rate, self.device)
        self.scheduler = get_cosine_schedule_with_warmup(
            self.optimizer, math.ceil(self.total_steps * config.warmup_ratio), self.total_steps
        )
        self.step = 0
        self.base_metrics: dict[str, Any] | None = None
        checkpoint = _latest_checkpoint(self.output)
        if checkpoint is not None:
            self._resume(checkpoint)
        if self.method.measures_base_first and self.base_metrics is None and self.eval_set:
            self.emit({"event": "phase", "phase": "evaluating", "passes": 1, "examples": len(self.eval_set)})
            self.base_metrics = self._evaluate()
        self.emit({
            "event": "start",
            "steps": self.total_steps,
            "resumed_from": self.step,
            "method": config.method,
            "processes": processes,
            "train_examples": len(self.train_set),
            "eval_examples": len(self.eval_set),
            "trainable_parameters": sum(p.numel() for p in self.trainable),
            "dataset": manifest.get("datasetId"),
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "memory_estimate_gib": round(self.estimate["total"] / GIB, 2) if self.estimate else None,
            "checkpointed_layers": sum(layer.gradient_checkpointing for layer in decoder_layers(self.model)),
        })

    def _resume(self, checkpoint: Path) -> None:
        """Weights, optimizer, schedule, random states and step count from the latest checkpoint."""
        state = torch.load(checkpoint / "trainer_state.pt", weights_only=False)
        self.method.load_checkpoint(checkpoint, self.model, self.optimizer, state, self.world)
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        random.setstate(state["python_rng"])
        self.step = state["step"]
        self.base_metrics = state.get("base_metrics")

    # ── train ──────────────────────────────────────────────────────────────────
    def train(self) -> bool:
        """Steps until the last; False when a STOP file ended the run first (a checkpoint is saved)."""
        config, processes, rank = self.config, self.world.world_size, self.world.rank
        self.model.train()
        started = time.time()
        supervised = 0
        done_this_run = 0
        eval_loss: float | None = None  # the latest, repeated on every log line for a live chart
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        while self.step < self.total_steps:
            if self._stop_requested():
                self.save_checkpoint()
                self.emit({"event": "stopped", "step": self.step})
                return False
            step_rows = self.order[self.step * processes : (self.step + 1) * processes]
            row = step_rows[rank]
            batch = pack(row, self.row_multiple, pad_id) if config.batching == "packed" else pad(row, pad_id)
            loss = supervised_loss(self.model, batch.to(self.device), config.loss_implementation)
            loss.backward()
            grad_norm = local_value(torch.nn.utils.clip_grad_norm_(self.trainable, 1.0))
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            done_this_run += 1
            supervised += sum(e.supervised_tokens for r in step_rows for e in r)
            elapsed = time.time() - started
            self.emit({
                "event": "log",
                "step": self.step,
                "max_steps": self.total_steps,
                "epoch": round(self.step * processes / max(len(self.rows), 1), 3),
                "loss": round(self.world.mean(loss.item()), 5),
                "lr": self.scheduler.get_last_lr()[0],
                "grad_norm": round(float(grad_norm), 4),
                "supervised_tokens_per_second": round(supervised / max(elapsed, 1e-9), 1),
                "padding_fraction": round(batch.padding_fraction, 4),
                "eval_loss": eval_loss,
                "eta_seconds": round(elapsed / done_this_run * (self.total_steps - self.step), 1),
            })
            if config.eval_every and self.step % config.eval_every == 0 and self.eval_set and self.step < self.total_steps:
                self.emit({"event": "phase", "phase": "evaluating", "passes": 1, "examples": len(self.eval_set)})
                result = self._evaluate()
                eval_loss = round(result["overall"]["loss"], 5)
                self.emit({"event": "eval", "step": self.step, **result["overall"]})
            if config.save_every and self.step % config.save_every == 0:
                self.save_checkpoint()
        return True

    def trained_tokens(self) -> int:
        """The tokens learnt over the run's steps (every process's rows)."""
        processes = self.world.world_size
        return sum(e.supervised_tokens for row in self.order[: self.step * processes] for e in row)

    def _stop_requested(self) -> bool:
        """A STOP file in the output folder (the worker's cancel); seen by rank 0, it stops every process."""
        return self.world.any((self.output / "STOP").exists())

    def _evaluate(self, base: bool = False) -> dict[str, Any]:
        return evaluate(
            self.model,
            self.eval_set,
            base=base,
            tokens_per_batch=self.config.tokens_per_batch,
            device=self.device,
            row_multiple=self.row_multiple,
        )

    # ── save ───────────────────────────────────────────────────────────────────
    def save_checkpoint(self) -> Path:
        """checkpoint-<step>: the method's weights and optimizer state, plus trainer_state.pt (schedule,
        random states, step, the base's metrics) written once, by rank 0."""
        folder = self.output / f"checkpoint-{self.step}"
        state = {
            "scheduler": self.scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "step": self.step,
            "base_metrics": self.base_metrics,
        }
        self.method.save_checkpoint(folder, self.model, self.optimizer, state)
        if self.world.main:
            torch.save(state, folder / "trainer_state.pt")
        self.world.barrier()
        self.emit({"event": "checkpoint", "step": self.step, "path": str(folder)})
        return folder

    def save(self) -> dict[str, Any]:
        """The last checkpoint, the result (adapter or model), the held-out metrics of base and tuned."""
        if not (self.output / f"checkpoint-{self.step}").exists():
            self.save_checkpoint()  # a rerun of a finished run resumes here and only re-evaluates
        result = self.output / self.method.result
        self.method.save_result(self.model, self.tokenizer, result, self.world)
        metrics: dict[str, Any] = {}
        if self.eval_set:
            passes = 1 if self.method.measures_base_first else 2  # the tuned model, then the base
            self.emit({"event": "phase", "phase": "evaluating", "passes": passes, "examples": len(self.eval_set)})
            tuned = self._evaluate()
            if not self.method.measures_base_first:
                self.base_metrics = self._evaluate(base=True)
            metrics = {
                "base": self.base_metrics,
                "tuned": tuned,
                "eval_examples": len(self.eval_set),
                "steps": self.step,
                "trained_tokens": self.trained_tokens(),
            }
            self.emit({"event": "eval", "step": self.step, **metrics["tuned"]["overall"]})
        if self.world.main:
            (self.output / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
        self.emit({
            "event": "done",
            "step": self.step,
            "method": self.config.method,
            self.method.result: str(result),
            "metrics": {k: metrics[k]["overall"] for k in ("base", "tuned")} if metrics else None,
        })
        return {"stopped": False, "step": self.step, "metrics": metrics}

    # ── cleanup ────────────────────────────────────────────────────────────────
    def cleanup(self) -> None:
        self.world.leave()


def train(config: TrainConfig, emit: Emit = json_lines()) -> dict[str, Any]:
    """A whole run: {"stopped": True, "step"} when a STOP file ended it, else also its "metrics"."""
    recipe = Recipe(config, emit)
    try:
        recipe.setup()
        if not recipe.train():
            return {"stopped": True, "step": recipe.step}
        return recipe.save()
    finally:
        recipe.cleanup()
