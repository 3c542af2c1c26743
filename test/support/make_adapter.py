"""Test support, run with the trainer's Python: a LoRA adapter with random B on the test model,
exported to GGUF, plus PyTorch's next-token top-1 for base and tuned at every position of the
given prompts (and the tuned model's 20 likeliest tokens with their log-probabilities). Usage: make_adapter.py <base.gguf> <out dir> <prompts.json>

With --adapter DIR, the adapter is an existing one (a trained run's output/adapter, peft
save_pretrained) loaded onto the base (a GGUF or an HF folder) instead of a random one, and nothing
is exported: only torch.json is written. Usage: make_adapter.py <base> <out dir> <prompts.json> --adapter DIR"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "trainer"))

from random_lora import random_lora  # noqa: E402
from twin_trainer.gguf_export import export_adapter  # noqa: E402
from twin_trainer.model import load_base  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("base")
parser.add_argument("out", type=Path)
parser.add_argument("prompts")
parser.add_argument("--adapter", help="an existing adapter folder: load it instead of making a random one")
arguments = parser.parse_args()
base_path, out, prompts_file = arguments.base, arguments.out, arguments.prompts
prompts = json.loads(Path(prompts_file).read_text())
model, _ = load_base(base_path)
if arguments.adapter:
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, arguments.adapter)
else:
    model = random_lora(model, std=0.1)
    model.save_pretrained(out / "adapter")
    export_adapter(out / "adapter", base_path, out / "adapter.gguf")
result = {"tuned": [], "base": [], "tuned_top": []}
model.eval()
with torch.no_grad():
    for ids in prompts:
        tensor = torch.tensor([ids])
        logits = model(input_ids=tensor).logits[0]
        result["tuned"].append(logits.argmax(-1).tolist())
        # The 20 likeliest tokens and their log-probabilities at each position: how far a token
        # llama.cpp prefers lies from PyTorch's choice (a near tie, or a real disagreement).
        top = torch.log_softmax(logits.float(), -1).topk(20, dim=-1)
        result["tuned_top"].append(
            [list(zip(i.tolist(), [round(v, 5) for v in lp.tolist()])) for i, lp in zip(top.indices, top.values)]
        )
        with model.disable_adapter():
            result["base"].append(model(input_ids=tensor).logits[0].argmax(-1).tolist())
(out / "torch.json").write_text(json.dumps(result))
