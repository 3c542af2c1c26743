"""Test support, run with the trainer's Python: transformers' token ids for texts, as the trainer
tokenizes them (add_special_tokens=False; special tokens written in the text, <|im_start|> and
<|im_end|>, parsed as the single tokens they are). Two tokenizers are asked: the one
twin_trainer.model.load_base hands the trainer for a GGUF base ("trainer"), and the one transformers
builds straight from the GGUF's metadata ("gguf"), to tell a loader fix from a transformers fix.

Usage: tokenize_texts.py <model.gguf> <texts.json> <out.json>; texts.json is a list of strings,
out.json is {"trainer": [[id, …] per text], "gguf": [[id, …] per text]}.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "trainer"))
from transformers import AutoTokenizer  # noqa: E402

from twin_trainer.model import load_base  # noqa: E402


def main() -> None:
    model, texts_file, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    texts: list[str] = json.loads(Path(texts_file).read_text())
    _, trainer = load_base(model)
    gguf = AutoTokenizer.from_pretrained(model.parent, gguf_file=model.name)
    result = {
        "trainer": trainer(texts, add_special_tokens=False)["input_ids"],
        "gguf": gguf(texts, add_special_tokens=False)["input_ids"],
    }
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
