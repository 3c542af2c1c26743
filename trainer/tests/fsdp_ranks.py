"""One process of the two-process FSDP2 test (started by torchrun from test_full.py).

Each process shards SmolLM2 with the trainer's own `shard`, takes the loss of its own packed row
and backpropagates; FSDP averages the gradients across the processes and leaves each process its
shard. Rank 0 then runs the same model unsharded, alone, on both rows (the mean of the two
losses) and compares every parameter's gradient, gathered from the shards, with its own.
Usage: torchrun --nproc-per-node 2 fsdp_ranks.py <dataset folder> <result.json>
"""

import json
import sys
from pathlib import Path

import torch

from conftest import smollm2_gguf
from twin_trainer.data import label_example, load_dataset
from twin_trainer.forward import supervised_loss
from twin_trainer.model import load_base
from twin_trainer.packing import pack, pack_greedily
from twin_trainer.sharding import join_cluster, shard


def main(dataset: str, result: str) -> None:
    torch.manual_seed(0)
    cluster = join_cluster(torch.device("cpu"))
    if not cluster.main:
        torch.distributed.barrier()  # rank 0 converts the GGUF into the cache first; then all read it
    model, tokenizer = load_base(smollm2_gguf(), attn_implementation="twin_packed")
    if cluster.main:
        torch.distributed.barrier()
    examples = [label_example(e, tokenizer) for e in load_dataset(dataset).train]
    rows = pack_greedily([e for e in examples if e.supervised_tokens], 96)[:2]
    assert len(rows) == 2, "the dataset gives two packed rows"
    model.config.use_cache = False
    names = [name for name, _ in model.named_parameters()]
    full_sizes = {name: p.numel() for name, p in model.named_parameters()}

    shard(model, cluster, compute_dtype=torch.float32)
    parameters = dict(model.named_parameters())
    facts = {
        "world_size": cluster.world_size,
        "dtensors": sum(type(p).__name__ == "DTensor" for p in parameters.values()),
        "parameters": len(parameters),
        "local_elements": sum(p.to_local().numel() for p in parameters.values()),
        "full_elements": sum(full_sizes.values()),
        "mesh_sizes": sorted({p.device_mesh.size() for p in parameters.values()}),
    }
    loss = supervised_loss(model, pack(rows[cluster.rank]))
    loss.backward()
    gathered = {name: parameters[name].grad.full_tensor() for name in names}  # a collective: every rank calls it
    if not cluster.main:
        cluster.leave()
        return

    alone, _ = load_base(smollm2_gguf(), attn_implementation="twin_packed")
    alone.config.use_cache = False
    reference = (supervised_loss(alone, pack(rows[0])) + supervised_loss(alone, pack(rows[1]))) / 2
    reference.backward()
    worst = 0.0
    for name, parameter in alone.named_parameters():
        expected = parameter.grad
        relative = ((gathered[name] - expected).norm() / expected.norm().clamp_min(1e-12)).item()
        worst = max(worst, relative)
    everything = torch.cat([g.reshape(-1) for g in gathered.values()])
    expected_all = torch.cat([p.grad.reshape(-1) for p in alone.parameters()])
    facts |= {
        "worst_relative_l2": worst,
        "overall_relative_l2": ((everything - expected_all).norm() / expected_all.norm()).item(),
        "max_abs_difference": (everything - expected_all).abs().max().item(),
        "gradient_norm": expected_all.norm().item(),
        "compared": len(gathered),
    }
    Path(result).write_text(json.dumps(facts))
    cluster.leave()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
