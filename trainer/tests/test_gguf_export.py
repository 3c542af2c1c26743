import json

import numpy as np
import pytest
import torch

from conftest import smollm2_gguf
from twin_trainer.gguf_export import (
    FINGERPRINT_KEY,
    ExportError,
    base_facts,
    base_fingerprint,
    export_adapter,
    permute_rows,
)
from twin_trainer.model import load_base


@pytest.fixture(scope="module")
def base():
    model, _ = load_base(smollm2_gguf())
    return model


def gguf_tensor(name: str) -> np.ndarray:
    from gguf import GGUFReader
    from gguf.quants import dequantize

    tensor = next(t for t in GGUFReader(str(smollm2_gguf())).tensors if t.name == name)
    return dequantize(tensor.data, tensor.tensor_type).reshape(list(reversed([int(d) for d in tensor.shape])))


def test_permutation_matches_how_llama_cpp_stored_the_base(base):
    facts = base_facts(smollm2_gguf())
    attention = base.model.layers[0].self_attn
    q = attention.q_proj.weight.detach().numpy()
    k = attention.k_proj.weight.detach().numpy()
    np.testing.assert_allclose(permute_rows(q, facts["heads"]), gguf_tensor("blk.0.attn_q.weight"), atol=1e-6)
    np.testing.assert_allclose(permute_rows(k, facts["kv_heads"]), gguf_tensor("blk.0.attn_k.weight"), atol=1e-6)
    # The same comparison without the permutation fails: the test can tell.
    assert not np.allclose(q, gguf_tensor("blk.0.attn_q.weight"), atol=1e-3)


def test_adapter_exports_with_llama_cpp_names_metadata_and_permuted_q_k(base, tmp_path):
    from gguf import GGUFReader
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    torch.manual_seed(0)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.02)
    model.save_pretrained(tmp_path / "adapter")
    out = export_adapter(tmp_path / "adapter", smollm2_gguf(), tmp_path / "adapter.gguf")

    reader = GGUFReader(str(out))
    text = lambda key: reader.fields[key].parts[reader.fields[key].data[0]].tobytes().decode()  # noqa: E731
    assert text("general.type") == "adapter" and text("adapter.type") == "lora"
    assert text("general.architecture") == "llama"
    assert float(reader.fields["adapter.lora.alpha"].parts[-1][0]) == 8.0
    assert text(FINGERPRINT_KEY) == base_fingerprint(smollm2_gguf())
    layers = base_facts(smollm2_gguf())["layers"]
    names = {t.name for t in reader.tensors}
    assert len(names) == layers * 7 * 2
    assert "blk.0.attn_q.weight.lora_b" in names and f"blk.{layers - 1}.ffn_down.weight.lora_a" in names

    heads = base_facts(smollm2_gguf())["heads"]
    b_q = model.base_model.model.model.layers[0].self_attn.q_proj.lora_B["default"].weight.detach().numpy()
    written = next(t for t in reader.tensors if t.name == "blk.0.attn_q.weight.lora_b")
    stored = np.asarray(written.data).reshape(b_q.shape)
    np.testing.assert_allclose(stored, permute_rows(b_q, heads))
    b_v = model.base_model.model.model.layers[0].self_attn.v_proj.lora_B["default"].weight.detach().numpy()
    stored_v = np.asarray(next(t for t in reader.tensors if t.name == "blk.0.attn_v.weight.lora_b").data).reshape(b_v.shape)
    np.testing.assert_allclose(stored_v, b_v)
    # The command line writes the same file.
    from twin_trainer.__main__ import main

    assert main(["export-gguf", "--adapter", str(tmp_path / "adapter"), "--base", str(smollm2_gguf()),
                 "--out", str(tmp_path / "cli.gguf")]) == 0
    assert (tmp_path / "cli.gguf").read_bytes() == out.read_bytes()
    model.unload()


@pytest.mark.unit
def test_dora_is_refused(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8, "use_dora": True}))
    with pytest.raises(ExportError, match="DoRA"):
        export_adapter(tmp_path, smollm2_gguf(), tmp_path / "x.gguf")


def small_adapter(base, folder, **settings):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], **settings))
    model.save_pretrained(folder)
    model.unload()
    return folder


def test_rslora_alpha_is_rescaled_so_llama_cpp_applies_the_same_update(base, tmp_path):
    from gguf import GGUFReader

    out = export_adapter(small_adapter(base, tmp_path / "rs", use_rslora=True), smollm2_gguf(), tmp_path / "rs.gguf")
    alpha = float(GGUFReader(str(out)).fields["adapter.lora.alpha"].parts[-1][0])
    # peft scales rsLoRA by alpha / sqrt(r) = 8 / 2; llama.cpp by alpha / r: alpha must become 16.
    assert alpha / 4 == pytest.approx(8 / 4**0.5)


def test_an_adapter_is_refused_for_a_base_whose_shapes_differ(base, tmp_path):
    import gguf

    other = tmp_path / "other.gguf"
    writer = gguf.GGUFWriter(str(other), "llama")
    facts = base_facts(smollm2_gguf())
    writer.add_uint32("llama.block_count", facts["layers"])
    writer.add_uint32("llama.attention.head_count", facts["heads"])
    writer.add_uint32("llama.attention.head_count_kv", facts["kv_heads"])
    for layer in range(facts["layers"]):
        for name in ("attn_q", "attn_v"):
            writer.add_tensor(f"blk.{layer}.{name}.weight", np.zeros((64, 48), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ExportError, match="does not fit the base's blk.0.attn_q.weight"):
        export_adapter(small_adapter(base, tmp_path / "a"), other, tmp_path / "x.gguf")
