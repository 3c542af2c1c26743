"""Test support, run with the trainer's Python: full fine-tuning of the test model for a few steps
(the trainer's own `train`, method=full), its weights exported to GGUF as f16 and q8_0, plus
PyTorch's next-token top-1 for the base and the tuned model at every position of the given prompts
(and the tuned model's 20 likeliest tokens with their log-probabilities).
Usage: make_full_model.py <base.gguf> <out dir> <prompts.json>"""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "trainer"))

from twin_trainer.config import TrainConfig  # noqa: E402
from twin_trainer.gguf_export import export_full_model  # noqa: E402
from twin_trainer.model import load_base  # noqa: E402
from twin_trainer.train import train  # noqa: E402

base_path, out, prompts_file = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
prompts = json.loads(Path(prompts_file).read_text())


def example(i: int, split: str) -> dict:
    """A friend asks, the owner answers in their own register: something to learn in a few steps."""
    segments = [
        {"text": "<|im_start|>Friend\n", "train": False, "speaker": "Friend"},
        {"text": f">>> are you coming tonight? it's at {i} o'clock<|im_end|>", "train": False, "speaker": "Friend"},
        {"text": "\n", "train": False},
        {"text": "<|im_start|>Me\n", "train": False, "speaker": "Me"},
        {"text": f">>> ya ya, gonna be there by {i} lol\n>>> save me a seat<|im_end|>", "train": True, "speaker": "Me"},
    ]
    return {"id": f"{split}{i}", "chat_id": 2, "started_at": "2024-01-01T00:00:00Z", "split": split,
            "speakers": [{"id": 1, "name": "Me"}, {"id": 2, "name": "Friend"}], "segments": segments}


data = out / "data"
data.mkdir(parents=True)
(data / "manifest.json").write_text(json.dumps({"formatVersion": 1, "datasetId": 1}))
(data / "train.jsonl").write_text("".join(json.dumps(example(i, "train")) + "\n" for i in range(8)))
(data / "eval.jsonl").write_text("".join(json.dumps(example(i, "eval")) + "\n" for i in range(8, 10)))
config = TrainConfig(base=base_path, dataset=str(data), output=str(out / "run"), method="full", max_steps=4,
                     tokens_per_batch=128, learning_rate=1e-4, warmup_ratio=0, eval_every=0, save_every=0)
train(config, lambda event: None)
for export_type in ("f16", "q8_0"):
    export_full_model(out / "run" / "model", base_path, out / f"model-{export_type}.gguf", export_type)

tuned, _ = load_base(out / "run" / "model")
base, _ = load_base(base_path)
result = {"tuned": [], "base": [], "tuned_top": []}
with torch.no_grad():
    for ids in prompts:
        tensor = torch.tensor([ids])
        logits = tuned(input_ids=tensor).logits[0]
        result["tuned"].append(logits.argmax(-1).tolist())
        top = torch.log_softmax(logits.float(), -1).topk(20, dim=-1)
        result["tuned_top"].append(
            [list(zip(i.tolist(), [round(v, 5) for v in lp.tolist()])) for i, lp in zip(top.indices, top.values)]
        )
        result["base"].append(base(input_ids=tensor).logits[0].argmax(-1).tolist())
(out / "torch.json").write_text(json.dumps(result))
