"""Test support, run with the trainer's Python: a small Qwen2 model, its GGUF, a LoRA adapter on it
exported with twin_trainer.gguf_export, and PyTorch's next-token log-probabilities for base and
tuned at every position of the given prompts. Covers the architecture whose q/k llama.cpp stores
unpermuted (the test model, SmolLM2, is "llama", whose q/k are permuted).

There is no Qwen tokenizer offline, so the model uses SmolLM2's vocabulary: the tokenizer comes
from the SmolLM2 GGUF (transformers for training, its tokenizer.ggml.* metadata copied into the
Qwen2 GGUF for llama.cpp). The model is 3 layers, hidden 128, 4 query heads over 2 key/value heads
(GQA), q/k/v biases as Qwen2 has, untied embeddings (a separate output.weight, as Qwen2-7B; tied,
the model learnt slowly and the adapter's effect swung with the learning rate); seeded and trained
a few dozen steps (full fine-tune) so its logits are not near-ties. The GGUF is F32, so llama.cpp and
PyTorch run the same weights and only arithmetic order differs.

Usage: make_qwen2.py <smollm2.gguf> <out dir> <prompts.json>
Writes <out>/hf (model + tokenizer), <out>/base.gguf, <out>/adapter (peft), <out>/adapter.gguf and
<out>/torch.json: {"positions": [[{"ids", "base", "tuned", "kl"} per position] per prompt]} where
ids are the union of base's and tuned's top TOP_K tokens, base/tuned their log-probabilities and
kl is KL(tuned ‖ base) over the whole vocabulary.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "trainer"))
import gguf  # noqa: E402
from random_lora import random_lora  # noqa: E402
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM  # noqa: E402

from twin_trainer.gguf_export import copy_metadata, export_adapter  # noqa: E402
from twin_trainer.model import load_base  # noqa: E402

TOP_K = 8
TRAIN_STEPS = 40
CORPUS = [
    ("Friend", "hey, are you coming tonight?"),
    ("Me", "yeah, around nine. should I bring anything?"),
    ("Friend", "just snacks, we have drinks already"),
    ("Me", "ok, chips and some fruit then"),
    ("Ann", "did you see the game last night?"),
    ("Bob", "no, I was stuck at work until eleven"),
    ("Ann", "it went to penalties, you missed a good one"),
    ("Bob", "ugh. who won?"),
    ("Друг", "привет, как дела? 🔥"),
    ("Я", "норм, работаю. а у тебя?"),
    ("Друг", "тоже работаю, вечером созвонимся?"),
    ("Я", "давай, после восьми"),
    ("Sam", "the build is broken again on main"),
    ("Me", "which test? I can look after lunch"),
    ("Sam", "the adapter one, llama.cpp says the tensor is missing"),
    ("Me", "probably the export, I will check the names"),
]


def main() -> None:
    smollm, out, prompts_file = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    prompts: list[list[int]] = json.loads(Path(prompts_file).read_text())
    torch.set_num_threads(1)  # moderate: the test machine is shared with other jobs
    tokenizer = AutoTokenizer.from_pretrained(smollm.parent, gguf_file=smollm.name)
    source = gguf.GGUFReader(str(smollm))
    vocab = len(source.fields["tokenizer.ggml.tokens"].data)

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = Qwen2ForCausalLM(config)
    train(model, tokenizer)
    hf = out / "hf"
    model.save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    write_gguf(model, config, source, out / "base.gguf")

    model, _ = load_base(hf)  # the trainer's loader, as training would see the saved model
    # B large enough that q/k matter: with q/k exported permuted the log-probs move by nats.
    model = random_lora(model, std=0.2)
    model.save_pretrained(out / "adapter")
    export_adapter(out / "adapter", out / "base.gguf", out / "adapter.gguf")

    model.eval()
    result: dict[str, list] = {"positions": []}
    with torch.no_grad():
        for ids in prompts:
            tensor = torch.tensor([ids])
            tuned = torch.log_softmax(model(input_ids=tensor).logits[0].double(), -1)
            with model.disable_adapter():
                base = torch.log_softmax(model(input_ids=tensor).logits[0].double(), -1)
            kl = (tuned.exp() * (tuned - base)).sum(-1)
            positions = []
            for p in range(len(ids)):
                top = set(base[p].topk(TOP_K).indices.tolist()) | set(tuned[p].topk(TOP_K).indices.tolist())
                chosen = sorted(top)
                positions.append(
                    {
                        "ids": chosen,
                        "base": [round(base[p, i].item(), 6) for i in chosen],
                        "tuned": [round(tuned[p, i].item(), 6) for i in chosen],
                        "kl": round(kl[p].item(), 6),
                    }
                )
            result["positions"].append(positions)
    (out / "torch.json").write_text(json.dumps(result))


def train(model: Qwen2ForCausalLM, tokenizer) -> None:
    """A few dozen full fine-tune steps on short ChatML chats, so predictions are peaked, not ties.
    One chat per step: the 49k-token output layer makes each step cost by the token."""
    chats = [
        "\n".join(f"<|im_start|>{who}\n>>> {text}<|im_end|>" for who, text in CORPUS[i : i + 4])
        for i in range(0, len(CORPUS), 4)
    ]
    batches = [torch.tensor([tokenizer(chat, add_special_tokens=False)["input_ids"]]) for chat in chats]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for step in range(TRAIN_STEPS):
        ids = batches[step % len(batches)]
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    print(f"training loss after {TRAIN_STEPS} steps: {loss.item():.3f}", file=sys.stderr)


# HF Qwen2 parameter → llama.cpp tensor (llama.cpp src/models/qwen2.cpp, gguf-py tensor_mapping.py).
# Qwen2 rotates with NEOX-style halves, as HF does, so q/k are written as they are (no permutation).
LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(name: str) -> str:
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    if name == "lm_head.weight":
        return "output.weight"
    parts = name.split(".")
    if parts[:2] == ["model", "layers"]:
        return f"blk.{parts[2]}.{LAYER_TENSORS['.'.join(parts[3:])]}"
    raise ValueError(f"no GGUF name for {name}")


def write_gguf(model: Qwen2ForCausalLM, config: Qwen2Config, source: gguf.GGUFReader, path: Path) -> None:
    arch = "qwen2"
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("twin test qwen2")
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    # The vocabulary as the SmolLM2 GGUF has it: model, pre-tokenizer, tokens, types, merges, special ids.
    copy_metadata(source, writer, lambda key: key.startswith("tokenizer."))
    # Names checked against gguf-py's own map for the architecture as well as the table above.
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        target = gguf_name(name)
        expected = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if expected != target:
            raise ValueError(f"{name}: mapped to {target}, gguf-py says {expected}")
        writer.add_tensor(target, np.ascontiguousarray(tensor.detach().float().numpy()))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
