"""Full fine-tuning: FSDP2 for real over two CPU processes (gloo), and the memory refusal.
(That it learns, in one process, is in test_learning.py beside LoRA.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import smollm2_gguf
from test_train import write_dataset
from twin_trainer.config import load_config
from twin_trainer.memory import MemoryBudgetError
from twin_trainer.train import memory_estimate, train

TESTS = Path(__file__).resolve().parent
TRAINER = TESTS.parent
# Per parameter, the gradient FSDP leaves in the shards, gathered, against one process's: relative L2.
GRADIENT_TOLERANCE = 1e-5


def torchrun(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": f"{TESTS}:{TRAINER}"}  # one thread per process on 2 cores
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def test_two_processes_shard_every_weight_and_their_gradients_match_one_process(tmp_path):
    write_dataset(tmp_path / "data")
    result = tmp_path / "result.json"
    done = torchrun(str(TESTS / "fsdp_ranks.py"), str(tmp_path / "data"), str(result), cwd=TESTS)
    assert done.returncode == 0, f"torchrun failed:\n{done.stderr[-3000:]}"
    facts = json.loads(result.read_text())
    assert facts["world_size"] == 2 and facts["mesh_sizes"] == [2], facts
    assert facts["dtensors"] == facts["parameters"] == 272, "every parameter is a DTensor"
    # Each process holds half of the weights (rows split on dim 0; odd sizes pad one shard).
    assert abs(facts["local_elements"] / facts["full_elements"] - 0.5) < 0.01, facts
    assert facts["compared"] == 272
    assert facts["worst_relative_l2"] < GRADIENT_TOLERANCE, facts
    assert facts["gradient_norm"] > 1, "a real gradient, not zeros"


def test_a_two_process_run_trains_checkpoints_sharded_and_resumes_in_one_process(tmp_path):
    write_dataset(tmp_path / "data", n_train=8)
    run = tmp_path / "run"
    settings = [f"base={smollm2_gguf()}", f"dataset={tmp_path / 'data'}", f"output={run}", "method=full", "max_steps=2",
                "tokens_per_batch=64", "eval_every=0", "save_every=1", "learning_rate=1e-5", f"events={tmp_path / 'events'}"]
    done = torchrun("-m", "twin_trainer", "train", *[f"--set={s}" for s in settings], cwd=TRAINER)
    assert done.returncode == 0, f"torchrun failed:\n{done.stderr[-3000:]}"
    events = [json.loads(line) for line in (tmp_path / "events").read_text().splitlines()]
    start = next(e for e in events if e["event"] == "start")
    assert start["processes"] == 2 and start["method"] == "full", start
    assert [e["step"] for e in events if e["event"] == "log"] == [1, 2], "one voice: rank 0's events only"
    shards = sorted(p.name for p in (run / "checkpoint-2" / "sharded").iterdir())
    assert sum(name.endswith(".distcp") for name in shards) == 2, f"one shard file per process: {shards}"
    assert (run / "model" / "model.safetensors").stat().st_size > 4 * 134_000_000 * 0.9, "the whole fp32 model"

    # The same run, one more step, in one process: the two-way sharded checkpoint is resharded.
    config = load_config(None, [*settings[:-1], "max_steps=3"])
    resumed = []
    result = train(config, resumed.append)
    assert next(e for e in resumed if e["event"] == "start")["resumed_from"] == 2
    assert [e["step"] for e in resumed if e["event"] == "log"] == [3]
    assert result["metrics"]["base"]["overall"]["loss"] > 0


QWEN_7B_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
    "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": False,
}


@pytest.mark.unit
def test_full_fine_tuning_of_a_7b_model_is_refused_on_one_24_gb_card_with_the_estimate(tmp_path):
    # Only the config: the estimate builds the model on the meta device and reads no weights.
    (tmp_path / "qwen").mkdir()
    (tmp_path / "qwen" / "config.json").write_text(json.dumps(QWEN_7B_CONFIG))
    config_file = str(TRAINER / "configs" / "qwen2.5-7b-lora-1x24gb.yaml")
    lora = load_config(config_file, [f"base={tmp_path / 'qwen'}"])
    estimate = memory_estimate(lora, gpus=1)
    assert estimate is not None and 15e9 < estimate["total"] < 24e9, estimate
    full = load_config(config_file, [f"base={tmp_path / 'qwen'}", "method=full"])
    with pytest.raises(MemoryBudgetError, match=r"method=full of a 7\.6B-parameter model on 1 GPU\(s\) of 24 GB needs ~1[0-9]{2}\.\d GiB"):
        memory_estimate(full, gpus=1)
    eight = load_config(str(TRAINER / "configs" / "qwen2.5-7b-full-8x80gb.yaml"), [f"base={tmp_path / 'qwen'}"])
    assert memory_estimate(eight, gpus=8)["total"] < 80e9
    with pytest.raises(MemoryBudgetError, match="does not fit"):
        memory_estimate(eight, gpus=1)
