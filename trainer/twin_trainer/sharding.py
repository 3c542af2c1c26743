"""Full fine-tuning across processes: FSDP2 (`fully_shard`), sharded checkpoints, the full state at the end.

Launched by `torchrun` (it sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous; the worker starts
it as `python -m torch.distributed.run`), or run alone as a world of one. The sharding is PyTorch's
own `fully_shard` on each transformer layer, then the root (the wrapping accelerate's FSDP2 plugin
does), called directly because accelerate refuses FSDP on CPU: so the code the CPU tests run over
gloo is the code that runs over NCCL on GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from . import environment


@dataclass(frozen=True)
class Cluster:
    rank: int
    world_size: int
    device: torch.device
    owns_group: bool  # we started the process group, so we end it

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on one (a STOP file seen by rank 0 stops them all)."""
        value = torch.tensor([1 if flag else 0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def mean(self, value: float) -> float:
        """The mean over the processes of a per-process figure (each process's loss on its own row)."""
        total = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.item() / self.world_size

    def barrier(self) -> None:
        """Waits for every process (a checkpoint is complete only once each has written its shards)."""
        dist.barrier()

    def leave(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


@dataclass(frozen=True)
class SingleProcess:
    """A LoRA run's world: this process alone, no process group; it answers as a Cluster of one would."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    main: bool = True

    def any(self, flag: bool) -> bool:
        return flag

    def mean(self, value: float) -> float:
        return value

    def barrier(self) -> None:
        pass

    def leave(self) -> None:
        pass


def join_cluster(device: torch.device) -> Cluster:
    """The process group of a launched run (env://), or a world of one for a run started alone."""
    launched = environment.launched()
    if device.type == "cuda":
        local_rank = environment.local_rank() if launched else (device.index or 0)
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "cuda:nccl,cpu:gloo"  # gloo for the full state dict gathered to CPU at the end
    else:
        backend = "gloo"
    owns = not dist.is_initialized()
    if owns:
        if launched:
            dist.init_process_group(backend)
        else:
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return Cluster(dist.get_rank(), dist.get_world_size(), device, owns)


def transformer_layers(model: Any) -> list[torch.nn.Module]:
    """The modules transformers says must not be split (its decoder layers): FSDP's wrapping units."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [module for module in model.modules() if type(module).__name__ in names]
    if not layers:
        raise ValueError(f"{type(model).__name__}: no transformer layers found to shard (looked for {sorted(names)})")
    return layers


def shard(model: Any, cluster: Cluster, *, compute_dtype: torch.dtype) -> Any:
    """Shards every transformer layer, then the root (embeddings, final norm, head) over all processes.

    Master weights, gradients and optimizer states stay fp32 and sharded (16 bytes per parameter
    spread over the GPUs); layers compute in `compute_dtype` (bf16 on GPUs) and gradients are
    reduced in fp32.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(cluster.device.type, (cluster.world_size,))
    policy = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
    for layer in transformer_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def local_value(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (e.g. the clipped gradient norm), or the tensor itself."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def save_sharded(folder: Path, model: Any, optimizer: torch.optim.Optimizer) -> None:
    """Each process writes its own shards of the weights and optimizer states (torch.distributed.checkpoint)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(folder / "sharded"))


def load_sharded(folder: Path, model: Any, optimizer: torch.optim.Optimizer) -> None:
    """Reads a sharded checkpoint back, resharding it if the number of processes changed."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=str(folder / "sharded"))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def save_full_model(model: Any, tokenizer: Any, folder: Path, cluster: Cluster) -> None:
    """Gathers the whole model to rank 0's CPU and writes it as an HF folder (safetensors, fp32)."""
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not cluster.main:
        return
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # the same tensor as the embeddings; safetensors stores it once
    folder.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in state.items()}, str(folder / "model.safetensors"))
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
