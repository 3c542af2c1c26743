"""The pair check: a GGUF and HF weights are one model, or the first difference is named.

The weights are the test GGUF (SmolLM2-135M, Q4_1, a llama-architecture model: its q/k rows are
permuted) dequantized by transformers, which converts a GGUF independently of the check.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import queued_run, smollm2_gguf
from twin_trainer.gguf_export import base_fingerprint, describe_gguf, export_adapter
from twin_trainer.pair import PairMismatch, check_pair, describe_weights, tolerance
from twin_trainer.weights import is_hub_id, weights_folder

TRAINER = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights() -> Path:
    """The GGUF's weights as an HF folder (transformers' conversion, cached as training uses it)."""
    from twin_trainer.model import convert_gguf

    return convert_gguf(smollm2_gguf())


@pytest.fixture(scope="module")
def tensors(weights):
    from safetensors.torch import load_file

    return load_file(str(weights / "model.safetensors"))


def variant(weights: Path, folder: Path, tensors=None, config=None, tokenizer_config=None) -> Path:
    """A copy of `weights` in `folder` with other tensors, config or tokenizer settings; the rest linked."""
    from safetensors.torch import save_file

    folder.mkdir()
    for file in weights.iterdir():
        if file.name == "model.safetensors" and tensors is not None:
            save_file(tensors, str(folder / file.name), metadata={"format": "pt"})
        elif file.name == "config.json" and config is not None:
            (folder / file.name).write_text(json.dumps({**json.loads(file.read_text()), **config}))
        elif file.name == "tokenizer_config.json" and tokenizer_config is not None:
            (folder / file.name).write_text(json.dumps({**json.loads(file.read_text()), **tokenizer_config}))
        else:
            (folder / file.name).symlink_to(file)
    return folder


def check_pair_command(gguf: Path, folder: Path) -> tuple[int, dict]:
    done = subprocess.run(
        [sys.executable, "-m", "twin_trainer", "check-pair", str(gguf), str(folder)],
        cwd=TRAINER, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.returncode, json.loads(done.stdout)


def test_a_q4_1_gguf_and_its_own_dequantized_weights_are_one_model(weights):
    report = check_pair(smollm2_gguf(), weights)
    assert (report.architecture, report.layers, report.tensors, report.vocabulary) == ("llama", 30, 272, 49152)
    assert report.compared == 272, "every tensor's rows were compared (the tied head has no tensor of its own)"
    # Dequantizing gives back exactly what transformers dequantized: the q/k rows were un-permuted,
    # or attn_q/attn_k would be off by ~140%.
    assert report.worst["error"] < 1e-6, report.worst


def test_the_check_can_tell_rows_left_in_llama_cpp_order(weights, monkeypatch):
    import twin_trainer.pair

    monkeypatch.setattr(twin_trainer.pair, "PERMUTED_ARCHITECTURES", set())
    with pytest.raises(PairMismatch, match=r"^blk\.0\.attn_k\.weight \(model\.layers\.0\.self_attn\.k_proj\.weight\): its values differ"):
        check_pair(smollm2_gguf(), weights)


def test_one_tensor_scaled_by_half_again_is_refused_by_name_through_the_command(weights, tensors, tmp_path):
    name = "model.layers.7.self_attn.k_proj.weight"
    folder = variant(weights, tmp_path / "scaled", tensors={**tensors, name: tensors[name] * 1.5})
    code, answer = check_pair_command(smollm2_gguf(), folder)
    assert code == 1 and answer["ok"] is False
    assert answer["mismatch"] == (
        f"blk.7.attn_k.weight ({name}): its values differ from the weights' by 33.3% "
        "(relative error of 8 rows; Q4_1 allows 15.0%)"
    )


def test_a_truncated_vocabulary_is_refused_naming_the_embedding(weights, tensors, tmp_path):
    name = "model.embed_tokens.weight"
    folder = variant(weights, tmp_path / "truncated", tensors={**tensors, name: tensors[name][:49000].clone()})
    with pytest.raises(PairMismatch) as refused:
        check_pair(smollm2_gguf(), folder)
    assert str(refused.value) == f"token_embd.weight ({name}): shape [49000, 576] in the weights, [49152, 576] in the GGUF"


@pytest.mark.parametrize(
    ("config", "tokenizer_config", "refusal"),
    [
        ({"model_type": "qwen2"}, None, "architecture: the GGUF is llama, the weights are qwen2"),
        ({"num_hidden_layers": 29}, None, "layer count: the GGUF has 30, the weights 29"),
        ({"vocab_size": 49155}, None, "vocabulary size: the GGUF has 49152 tokens, the weights' config 49155"),
        (None, {"eos_token": "<|endoftext|>"}, "eos token: id 2 (<|im_end|>) in the GGUF, 0 (<|endoftext|>) in the weights"),
    ],
    ids=["architecture", "layers", "vocabulary", "eos"],
)
def test_another_architecture_layer_count_vocabulary_or_end_token_is_refused(weights, tmp_path, config, tokenizer_config, refusal):
    folder = variant(weights, tmp_path / "other", config=config, tokenizer_config=tokenizer_config)
    with pytest.raises(PairMismatch) as refused:
        check_pair(smollm2_gguf(), folder)
    assert str(refused.value) == refusal


def test_the_weights_alone_describe_the_base_as_its_gguf_does_and_export_the_same_adapter(weights, tmp_path):
    """A worker without the GGUF exports the adapter against this description, stamped with the run's fingerprint."""
    from safetensors.numpy import save_file

    gguf = describe_gguf(smollm2_gguf())
    alone = describe_weights(weights, "llama", base_fingerprint(smollm2_gguf()))
    assert alone == gguf
    assert len(gguf.shapes) == 30 * 7 + 1  # the projections, and the embedding

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8}))
    rng = np.random.default_rng(0)
    prefix = "base_model.model.model.layers.3.self_attn"
    save_file({
        f"{prefix}.q_proj.lora_A.weight": rng.standard_normal((4, 576)).astype(np.float32),
        f"{prefix}.q_proj.lora_B.weight": rng.standard_normal((576, 4)).astype(np.float32),
        f"{prefix}.k_proj.lora_A.weight": rng.standard_normal((4, 576)).astype(np.float32),
        f"{prefix}.k_proj.lora_B.weight": rng.standard_normal((192, 4)).astype(np.float32),
    }, str(adapter / "adapter_model.safetensors"))  # fmt: skip
    with_gguf = export_adapter(adapter, smollm2_gguf(), tmp_path / "with-gguf.gguf")
    without = export_adapter(adapter, alone, tmp_path / "without.gguf")
    assert with_gguf.read_bytes() == without.read_bytes()


@pytest.mark.unit
def test_tolerances_admit_what_quantization_loses_and_not_a_tensor_scaled_by_half_again():
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    assert tolerance("F32") == 1e-5 and tolerance("Q8_0") == 0.02 and tolerance("Q6_K") == 0.05
    assert tolerance("Q4_K") == tolerance("Q4_1") == tolerance("IQ4_XS") == 0.15
    assert tolerance("Q5_K") == 0.08 and tolerance("Q2_K") == 0.5
    with pytest.raises(PairMismatch, match="no tolerance for it"):
        tolerance("MXFP4")
    weights = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)
    for kind in ("Q4_0", "Q8_0"):
        restored = dequantize(quantize(weights, GGMLQuantizationType[kind]), GGMLQuantizationType[kind])
        lost = np.linalg.norm(restored - weights) / np.linalg.norm(weights)
        scaled = np.linalg.norm(restored - 1.5 * weights) / np.linalg.norm(1.5 * weights)
        assert tolerance(kind) / 4 < lost < tolerance(kind) / 1.5, f"{kind} loses {lost:.2%}"
        assert scaled > tolerance(kind), f"{kind}: a scaled tensor differs by {scaled:.2%}"


@pytest.mark.unit
def test_a_hub_id_is_org_slash_repo_fetched_into_the_store_as_twin_model_pull_lays_it_out(tmp_path):
    assert is_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert not is_hub_id(str(tmp_path)) and not is_hub_id("a/b/c") and not is_hub_id("../x")
    assert weights_folder("Qwen/Qwen2.5-0.5B-Instruct", tmp_path) == tmp_path / "Qwen" / "Qwen2.5-0.5B-Instruct"


def test_a_worker_without_the_gguf_checks_its_weights_against_the_fingerprint_the_pull_recorded(weights, tensors, tmp_path):
    """A remote has the hub weights only: the pair check's fingerprint, recorded at pull time, is
    what tells it that it fetched the same model; other weights are refused, naming both."""
    import io

    from twin_trainer.weights import weights_fingerprint
    from twin_trainer.worker import WeightsMismatch, base_weights

    report = check_pair(smollm2_gguf(), weights)
    assert report.weights_fingerprint == weights_fingerprint(weights) and len(report.weights_fingerprint) == 64
    assert check_pair_command(smollm2_gguf(), weights)[1]["weights_fingerprint"] == report.weights_fingerprint

    recorded = report.weights_fingerprint
    assert base_weights(queued_run(base_hf=str(weights), base_weights_fingerprint=recorded)) == weights
    other = variant(weights, tmp_path / "other", tensors={**tensors, "model.norm.weight": tensors["model.norm.weight"] * 1.01})
    with pytest.raises(WeightsMismatch, match=rf"the weights {other}.* are not the ones checked against its GGUF at pull time \(fingerprint [0-9a-f]{{12}}…, recorded {recorded[:12]}…\)"):
        base_weights(queued_run(base_hf=str(other), base_weights_fingerprint=recorded))
    log = io.StringIO()
    assert base_weights(queued_run(base_hf=str(other)), log=log) == other
    assert "no pair check was recorded at pull time" in log.getvalue()


@pytest.mark.unit
def test_a_fetch_is_redone_when_the_folder_holds_another_commit_than_the_pinned_one(tmp_path, monkeypatch):
    from twin_trainer import weights as weights_module

    monkeypatch.setenv("TWIN_MODEL_STORE", str(tmp_path))
    folder = weights_folder("org/model", tmp_path / "hub")
    folder.mkdir(parents=True)
    (folder / ".twin-weights.json").write_text(json.dumps({"repo": "org/model", "revision": "a" * 40, "folder": str(folder)}))
    fetches = []
    monkeypatch.setattr(weights_module, "fetch_weights", lambda repo, dest, revision=None, log=None: fetches.append(revision))
    assert weights_module.resolve_weights("org/model", revision="a" * 40) == folder
    assert weights_module.resolve_weights("org/model") == folder
    assert fetches == [], "the pinned commit is there"
    weights_module.resolve_weights("org/model", revision="b" * 40)
    assert fetches == ["b" * 40]
