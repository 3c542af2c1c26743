"""bench/train — supervised tokens per second, packed rows versus padded batches, length-grouped and not.

Same data (the #ubuntu IRC fixture through `twin dataset`, loss on every speaker), same base
(SmolLM2-135M-Instruct), same number of steps and tokens per batch, in one run; prints both
rates, the ratio and both padding fractions.

The padded baseline is transformers' `group_by_length` (what the reference write-up trained with):
a fixed number of examples per batch, from length-sorted megabatches. Both modes share the same
forward pass (per-example attention, logits only where learnt), so the ratio is what packing
itself buys: with equal per-token cost it cannot exceed 1 / (1 - the baseline's padding share),
which the bench prints beside the measured ratio. The ungrouped baseline is padded batches of the
same size in plain random order (issue 33's bars: packing within 5% of the bound against the
grouped batches, at least 1.3× against the ungrouped ones).

    trainer/.venv/bin/python bench/train/train_bench.py [steps]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "trainer"))

from twin_trainer.config import TrainConfig  # noqa: E402
from twin_trainer.train import train  # noqa: E402


def build_dataset(work: Path) -> Path:
    env = {**os.environ, "TWIN_DATA_DIR": str(work / "data"), "TWIN_TZ": "UTC"}
    env.pop("DATABASE_URL", None)
    fixture = ROOT.parent / "shared/fixtures/irc/ubuntu_irc_as_telegram_export.json"
    twin = ["node", str(ROOT / "bin/twin.js")]
    subprocess.run([*twin, "import", str(fixture)], env=env, check=True, stdout=subprocess.DEVNULL)
    out = work / "dataset"
    subprocess.run(
        [*twin, "dataset", "--groups", "--since", "all", "--max-tokens", "512", "--eval-fraction", "0", "--memory", "off",
         "--out", str(out)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out


def run(mode: str, dataset: Path, output: Path, steps: int, model: str) -> dict:
    events: list[dict] = []
    config = TrainConfig(base=model, dataset=str(dataset), output=str(output), max_steps=steps,
                         tokens_per_batch=1024, batching=mode, eval_every=0, save_every=0)
    train(config, events.append)
    logs = [e for e in events if e["event"] == "log"]
    return {
        "mode": mode,
        "supervised_tokens_per_second": logs[-1]["supervised_tokens_per_second"],
        "padding_fraction": sum(e["padding_fraction"] for e in logs) / len(logs),
    }


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    model = subprocess.run(["node", str(ROOT / "scripts/test-model.mjs")], check=True, capture_output=True,
                           text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        os.chmod(work, 0o755)
        dataset = build_dataset(work)
        results = {mode: run(mode, dataset, work / mode, steps, model) for mode in ("packed", "padded", "ungrouped")}
    for result in results.values():
        print(f"{result['mode']:>9}: {result['supervised_tokens_per_second']:8.1f} supervised tokens/s, "
              f"padding {result['padding_fraction']:.1%}")
    packed = results["packed"]["supervised_tokens_per_second"]
    summary = {}
    for baseline, name in (("padded", "length-grouped"), ("ungrouped", "ungrouped")):
        ratio = packed / results[baseline]["supervised_tokens_per_second"]
        bound = 1 / (1 - results[baseline]["padding_fraction"])
        summary[baseline] = {"ratio": round(ratio, 3), "bound": round(bound, 3), "of_bound": round(ratio / bound, 3)}
        print(f"packed / {name} padded: {ratio:.2f}x, padding alone bounds it at {bound:.2f}x ({ratio / bound:.0%} of it)")
    print(f"({steps} steps each, 1,024 tokens per batch, SmolLM2-135M, CPU)")
    print(json.dumps({"results": results, "summary": summary}))


if __name__ == "__main__":
    main()
