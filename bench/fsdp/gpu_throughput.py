"""Training throughput through the trainer's own packed step, on one CUDA GPU (issue 33).

Rows of `--tokens` tokens are packed (the trainer's pack_greedily and pack) from documents whose
lengths follow the IRC fixture's dataset examples, about half of each document's tokens learnt, a
LoRA r16 on every linear projection with the config's dropout, on Qwen2.5 shapes with random
weights (nothing can be downloaded there). For each model size it sweeps, one factor at a time from
the trainer's current defaults, each factor from the best of the ones before:

  recomputation  all / half / none layers checkpointed      (gradient_checkpointing)
  loss           logits / chunked / liger                    (loss_implementation)
  attention      per-example / varlen / flex                 (attn_implementation)
  compile        off / on                                    (compile_layers)

and reports tokens/s, MFU (model FLOPs: 4·N per token for LoRA's frozen matmuls, 6·N for the
adapter, the learnt positions' head, causal attention within each document; recomputation counted
apart as hardware FLOPs), peak memory against the trainer's estimate. Then packing against
length-grouped and ungrouped padded batches of the same documents, with the best configuration.
Before all that, parity on the GPU: each new attention and loss against the reference, loss and
gradients, in bf16.

  python bench/fsdp/gpu_throughput.py [--sizes 1.5b,7b] [--tokens 4096] [--steps 6] [--budget 420] [--out DIR]
  python bench/fsdp/gpu_throughput.py --cpu --sizes tiny --steps 1      (a dry run of the same code)

Each result is one JSON line in DIR/gpu_throughput.jsonl, written as soon as it is known; a part
that fails is recorded with its error and the rest goes on; past --budget seconds the remaining
measurements are recorded as skipped.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "trainer"))
sys.path.insert(0, str(HERE))

from gpu_check import PROJECTIONS, SIZES  # noqa: E402
from twin_trainer.data import IGNORE_INDEX, LabelledExample  # noqa: E402
from twin_trainer.forward import ATTENTION, FLEX, VARLEN, register_packed_attention, supervised_loss  # noqa: E402
from twin_trainer.memory import GIB, ModelShape, estimate_bytes  # noqa: E402
from twin_trainer.packing import pack, pack_greedily, pad  # noqa: E402
from twin_trainer.train import COMPILED_ROW_MULTIPLE, compile_layers, decoder_layers, make_optimizer  # noqa: E402

# Token lengths of the examples of `twin dataset --groups --since all --loss owner` on the IRC
# fixture (1,921 examples, SmolLM2's tokenizer): mean 768, median 776, log-normal fit below. A
# "short" mix stands for a messenger's sessions (the write-up's 8.5 messages of a few words).
MIXES = {"irc": (6.637, 0.145), "short": (5.0, 0.9)}
LEARNT_SHARE = 0.5
DENSE_BF16_PEAK = 989e12  # the H200 SXM's datasheet figure (KINDS.md measured 790e12 on a matmul)
DEFAULTS = {"checkpointing": "all", "loss": "logits", "attention": "per-example", "compile": "off"}
CHOICES = {
    "checkpointing": ["all", "half", "none"],
    "loss": ["logits", "chunked", "liger"],
    "attention": ["per-example", "varlen", "flex"],
    "compile": ["off", "on"],
}
ATTENTIONS = {"per-example": ATTENTION, "varlen": VARLEN, "flex": FLEX}


def documents(mix: str, count: int, vocabulary: int, limit: int, seed: int = 1) -> list[LabelledExample]:
    """Random-token documents with log-normal lengths, the later half of each learnt (as a reply)."""
    mu, sigma = MIXES[mix]
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.distributions.LogNormal(mu, sigma).sample((count,)).round().clamp(8, limit).int().tolist()
    out = []
    for index, length in enumerate(lengths):
        ids = torch.randint(0, vocabulary, (length,), generator=generator).tolist()
        learnt_from = length - max(1, round(length * LEARNT_SHARE))
        labels = [IGNORE_INDEX] * learnt_from + ids[learnt_from:]
        out.append(LabelledExample(f"d{index}", ids, labels, [None] * length, [True] * length))
    return out


def rows_for(mix: str, tokens: int, rows: int, vocabulary: int, seed: int = 1) -> list[list[LabelledExample]]:
    """At least `rows` packed rows of `tokens` (the trainer's first-fit packing), fullest first."""
    mean = math.exp(MIXES[mix][0] + MIXES[mix][1] ** 2 / 2)
    docs = documents(mix, int(rows * tokens / mean * 1.3) + 8, vocabulary, tokens, seed)
    return pack_greedily(docs, tokens)[:rows]


def build_plain(size: str, dtype: torch.dtype, attention: str):
    from transformers import AutoModelForCausalLM, Qwen2Config

    hidden, intermediate, layers, heads, kv, vocabulary = SIZES[size]
    config = Qwen2Config(
        hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv, vocab_size=vocabulary, tie_word_embeddings=size in ("tiny", "0.5b", "1.5b", "3b"),
        use_cache=False,
    )  # fmt: skip
    register_packed_attention(attention)
    return AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attention)


def build(size: str, device: torch.device, dtype: torch.dtype, attention: str):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    with torch.device(device):
        model = build_plain(size, dtype, attention)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=PROJECTIONS, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def configure(model, setting: dict[str, str]) -> int:
    """Applies one sweep setting to a built model; returns the layers checkpointed."""
    name = ATTENTIONS[setting["attention"]]
    register_packed_attention(name)
    model.set_attn_implementation(name)
    layers = decoder_layers(model)
    named = {"all": len(layers), "half": len(layers) // 2, "none": 0}
    count = named[setting["checkpointing"]] if setting["checkpointing"] in named else int(setting["checkpointing"])
    for index, layer in enumerate(layers):
        layer.gradient_checkpointing = index < count
        layer._compiled_call_impl = None  # undo an earlier setting's compile
    if setting["compile"] == "on":
        compile_layers(model)
    return count


def flops(size: str, rows: list[list[LabelledExample]], trainable: int, checkpointed: int) -> tuple[float, float]:
    """(model FLOPs, recomputation FLOPs) of the rows' steps."""
    hidden, intermediate, layers, heads, kv, vocabulary = SIZES[size]
    head_dim = hidden // heads
    linear = layers * (hidden * hidden * 2 + 2 * hidden * kv * head_dim + 3 * hidden * intermediate)
    model = recompute = 0.0
    for row in rows:
        tokens = sum(len(e.input_ids) for e in row)
        learnt = sum(e.supervised_tokens for e in row)
        squares = sum(len(e.input_ids) ** 2 for e in row)
        attention_forward = 2 * squares * hidden * layers  # QKᵀ and AV, causal half, multiply-add
        model += 4 * linear * tokens + 6 * trainable * tokens + 4 * hidden * vocabulary * learnt + 3 * attention_forward
        recompute += (2 * linear * tokens + attention_forward) * checkpointed / layers
    return model, recompute


def measure(model, size: str, setting: dict[str, str], rows, steps: int, warmup: int, device: torch.device) -> dict:
    """Tokens/s, MFU and memory of `steps` steps after `warmup`; compiled layers get rows filled to a
    multiple of 64 tokens, as the trainer gives them (the filler counts as padding, not as tokens)."""
    checkpointed = configure(model, setting)
    multiple = COMPILED_ROW_MULTIPLE if setting["compile"] == "on" else 1
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(trainable, 1e-4, device)
    loss_name = setting["loss"]
    batches = [pack(row, multiple).to(device) for row in rows]

    def step(batch) -> float:
        loss = supervised_loss(model, batch, loss_name)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    compiling = time.perf_counter()
    for batch in batches[:warmup]:
        step(batch)
    synchronize(device)
    warmup_seconds = time.perf_counter() - compiling
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    timed = batches[warmup : warmup + steps]
    started = time.perf_counter()
    losses = [step(batch) for batch in timed]
    synchronize(device)
    seconds = time.perf_counter() - started
    tokens = sum(b.tokens for b in timed)
    model_flops, recompute_flops = flops(size, rows[warmup : warmup + steps], sum(p.numel() for p in trainable), checkpointed)
    hidden, _, layers, _, _, vocabulary = SIZES[size]
    total = sum(p.numel() for p in model.parameters())
    shape = ModelShape(total - sum(p.numel() for p in trainable), layers, hidden, vocabulary, sum(p.numel() for p in trainable))
    estimate = estimate_bytes(shape, method="lora", tokens_per_batch=max(b.tokens for b in timed), gradient_checkpointing=checkpointed > 0,
                              checkpointed_layers=checkpointed, logits=loss_name, supervised_share=LEARNT_SHARE)  # fmt: skip
    del optimizer
    return {
        "tokens_per_second": round(tokens / seconds, 1),
        "mfu": round(model_flops / seconds / DENSE_BF16_PEAK, 4),
        "hfu": round((model_flops + recompute_flops) / seconds / DENSE_BF16_PEAK, 4),
        "checkpointed_layers": checkpointed,
        "documents_per_row": round(sum(len(r) for r in rows[warmup : warmup + steps]) / len(timed), 2),
        "learnt_share": round(sum(b.labels.ne(IGNORE_INDEX).sum().item() for b in timed) / tokens, 3),
        "warmup_s": round(warmup_seconds, 1),
        "train_loss": round(float(torch.stack(losses).float().mean()), 4),
        "peak_gib": round(torch.cuda.max_memory_allocated() / GIB, 2) if device.type == "cuda" else None,
        "estimate_gib": round(estimate["total"] / GIB, 2),
    }


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def trainer_defaults(size: str, tokens: int, device: torch.device) -> dict[str, str]:
    """What the trainer itself picks with its default settings on this GPU (all "auto")."""
    from twin_trainer.config import TrainConfig
    from twin_trainer.forward import resolve_attention
    from twin_trainer.memory import layers_to_checkpoint
    from twin_trainer.train import PLANNED_SHARE, compiles

    config = TrainConfig(method="lora", tokens_per_batch=tokens)
    hidden, intermediate, layers, heads, kv, vocabulary = SIZES[size]
    with torch.device("meta"):
        model = build_plain(size, torch.bfloat16, ATTENTION)
    total = sum(p.numel() for p in model.parameters())
    lora = layers * 16 * (4 * hidden + 2 * kv * (hidden // heads) + 2 * hidden + 3 * (hidden + intermediate))
    shape = ModelShape(total, layers, hidden, vocabulary, lora)
    budget = torch.cuda.get_device_properties(device).total_memory * PLANNED_SHARE if device.type == "cuda" else 8e9
    checkpointed = layers_to_checkpoint(shape, budget_bytes=budget, method="lora", tokens_per_batch=tokens,
                                        logits=config.loss_implementation)  # fmt: skip
    attention = {value: key for key, value in ATTENTIONS.items()}[resolve_attention(config.attn_implementation, device.type == "cuda")]
    return {"checkpointing": str(checkpointed), "loss": config.loss_implementation, "attention": attention,
            "compile": "on" if compiles(config, device) else "off"}  # fmt: skip


def parity(device: torch.device, dtype: torch.dtype) -> list[dict]:
    """Each new path against the reference on one model and row: loss, and every LoRA gradient."""
    size, tokens = ("tiny", 256) if device.type == "cpu" else ("0.5b", 2048)
    rows = rows_for("short", tokens, 1, SIZES[size][5], seed=3)
    batch = pack(rows[0]).to(device)
    results = []

    def run(attention: str, loss: str) -> tuple[float, dict[str, torch.Tensor]]:
        model = build(size, device, dtype, ATTENTIONS[attention])
        for module in model.modules():  # dropout off: both paths must see the same network
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        value = supervised_loss(model, batch, loss)
        value.backward()
        grads = {n: p.grad.float() for n, p in model.named_parameters() if p.requires_grad}
        return value.item(), grads

    reference = run("per-example", "logits")
    for attention, loss in [("varlen", "logits"), ("flex", "logits"), ("per-example", "chunked"), ("per-example", "liger")]:
        row = {"parity": f"{attention}/{loss}", "size": size, "tokens": batch.tokens, "documents": len(rows[0])}
        try:
            value, grads = run(attention, loss)
            worst = max(((grads[n] - reference[1][n]).norm() / reference[1][n].norm().clamp_min(1e-12)).item() for n in grads)
            row |= {"loss": value, "reference_loss": reference[0], "loss_difference": abs(value - reference[0]),
                    "worst_relative_gradient_difference": worst}  # fmt: skip
        except Exception as error:  # noqa: BLE001 - recorded; the sweep still runs
            row |= {"error": f"{type(error).__name__}: {error}"[:500]}
        results.append(row)
        gc.collect()
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1.5b,7b")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--mix", default="irc", choices=sorted(MIXES))
    parser.add_argument("--budget", type=float, default=420, help="seconds after which no new measurement starts")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--cpu", action="store_true", help="a dry run on the CPU (fp32)")
    parser.add_argument("--defaults-only", action="store_true",
                        help="no sweep: the per-example reference and the trainer's own defaults only, no parity")  # fmt: skip
    arguments = parser.parse_args()
    device = torch.device("cpu" if arguments.cpu else "cuda")
    dtype = torch.float32 if arguments.cpu else torch.bfloat16
    started = time.monotonic()
    results = Path(arguments.out) / "gpu_throughput.jsonl"
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
            return {"error": f"{type(error).__name__}: {error}"[:800], "traceback": traceback.format_exc(limit=-4)}
        finally:
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()

    def left() -> bool:
        return time.monotonic() - started < arguments.budget

    import peft
    import transformers

    machine = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__, "device": str(device)}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(0)
        machine |= {"gpu": properties.name, "gpu_memory_gib": round(properties.total_memory / GIB, 1), "cuda": torch.version.cuda}
    try:
        import liger_kernel  # noqa: F401

        machine["liger_kernel"] = getattr(liger_kernel, "__version__", "present")
    except ImportError:
        machine["liger_kernel"] = None
    record({"machine": machine, "mix": arguments.mix, "tokens_per_row": arguments.tokens})
    if not arguments.defaults_only:
        for row in parity(device, dtype):
            record(row)

    steps, warmup = arguments.steps, arguments.warmup
    for size in arguments.sizes.split(","):
        rows = rows_for(arguments.mix, arguments.tokens, warmup + steps + 2, SIZES[size][5])
        model = build(size, device, dtype, ATTENTION)
        if arguments.defaults_only:
            chosen = trainer_defaults(size, arguments.tokens, device)
            for setting, name in ((DEFAULTS, "reference"), (chosen, "trainer defaults")):
                extra = 2 if setting["compile"] == "on" else 0
                row = attempt(measure, model, size, setting, rows, steps, warmup + extra, device)
                record({"size": size, "mix": arguments.mix, "as": name, **setting, **row})
            del model
            gc.collect()
            continue
        measured: list[tuple[dict[str, str], dict]] = []
        speed = lambda s: next((r.get("tokens_per_second", 0) for m, r in measured if m == s), 0)  # noqa: E731
        best = dict(DEFAULTS)
        # One factor at a time, each from the best so far (attention first: compiling the
        # per-example loop would specialise on every row's bounds).
        for factor in ("attention", "loss", "checkpointing", "compile"):
            for value in CHOICES[factor]:
                setting = best | {factor: value}
                if setting in [m for m, _ in measured]:
                    continue
                if not left():
                    record({"size": size, **setting, "skipped": f"past the {arguments.budget:.0f} s budget"})
                    continue
                extra = 2 if setting["compile"] == "on" or setting["attention"] == "flex" else 0  # compiling takes steps
                row = attempt(measure, model, size, setting, rows, steps, warmup + extra, device)
                record({"size": size, **setting, **row})
                measured.append((setting, row))
            best = max((m for m, _ in measured if all(m[f] == best[f] for f in best if f != factor)), key=speed, default=best)
        if not measured:
            continue
        winner = max(measured, key=lambda m: m[1].get("tokens_per_second", 0))[0]
        reference = speed(DEFAULTS)
        record({"size": size, "best": winner, "tokens_per_second": speed(winner),
                "against_defaults": round(speed(winner) / reference, 3) if reference else None})  # fmt: skip
        if left():
            record({"size": size, "packing": attempt(compare_batching, model, size, winner, arguments, device)})
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    record({"done_after_s": round(time.monotonic() - started, 1)})
    return 0


def compare_batching(model, size: str, setting: dict[str, str], arguments, device: torch.device) -> dict:
    """Real tokens/s of the same documents: packed rows, length-grouped and ungrouped padded batches."""
    from twin_trainer.packing import group_by_length

    configure(model, setting)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(trainable, 1e-4, device)
    tokens = arguments.tokens
    mean = math.exp(MIXES[arguments.mix][0] + MIXES[arguments.mix][1] ** 2 / 2)
    docs = documents(arguments.mix, int(tokens / mean * (arguments.steps + 3) * 1.3) + 8, SIZES[size][5], tokens, seed=5)
    per_batch = max(1, round(tokens / mean))
    shuffled = list(docs)
    ungrouped = [shuffled[i : i + per_batch] for i in range(0, len(shuffled), per_batch)]
    layouts = {
        "packed": [pack(row) for row in pack_greedily(docs, tokens)],
        "grouped": [pad(row, 0) for row in group_by_length(docs, tokens, seed=0)],
        "ungrouped": [pad(row, 0) for row in ungrouped],
    }
    out = {}
    for name, batches in layouts.items():
        batches = [b.to(device) for b in batches]
        for batch in batches[:1]:
            supervised_loss(model, batch, setting["loss"]).backward()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        started = time.perf_counter()
        for batch in batches[1:]:
            supervised_loss(model, batch, setting["loss"]).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        seconds = time.perf_counter() - started
        real = sum(b.tokens for b in batches[1:])
        padding = 1 - real / sum(b.input_ids.numel() for b in batches[1:])
        out[name] = {"tokens_per_second": round(real / seconds, 1), "padding_share": round(padding, 4), "batches": len(batches) - 1}
    for name in ("grouped", "ungrouped"):
        out[f"packed_vs_{name}"] = round(out["packed"]["tokens_per_second"] / out[name]["tokens_per_second"], 3)
        out[f"bound_vs_{name}"] = round(1 / (1 - out[name]["padding_share"]), 3)
    return out


if __name__ == "__main__":
    sys.exit(main())
