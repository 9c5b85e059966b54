"""Rank, world size and collectives — the only module that touches ``torch.distributed``.

Everything degrades to single-process behaviour when no process group is initialised, so the library
works the same in a notebook, under torchrun, or inside a Ray Train worker.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

BUCKET_CAP_MB = 25
"""DDP gradient bucket size (DDP's default size, given explicitly so that the first bucket is as large)."""


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


SYNC_BATCHNORM_DEVICES = ("cuda",)
"""Device types with a SyncBatchNorm kernel. Not the CPU: torch 2.14's SyncBatchNorm raises "expected input
tensor to be on GPU" there, and its kernels (``batch_norm_stats``) have no CPU implementation (measured with
a 2-process gloo group)."""


def syncs_batchnorm(device: torch.device) -> bool:
    """Whether ``wrap(..., sync_batchnorm=True)`` converts BatchNorm to SyncBatchNorm on ``device``."""
    return torch.device(device).type in SYNC_BATCHNORM_DEVICES


def wrap(module: nn.Module, device: torch.device, sync_batchnorm: bool = False) -> nn.Module:
    """Wrap in DDP when several processes train together; otherwise return ``module`` unchanged.

    Buffers are not broadcast on every forward: a GAN step calls D several times before one backward,
    and an in-place buffer broadcast between those calls breaks autograd (spectral norm's power-iteration
    vectors are buffers in the graph). ``average_buffers`` syncs BatchNorm statistics at snapshots instead.

    ``sync_batchnorm`` (on a device where ``syncs_batchnorm``): BatchNorm layers become SyncBatchNorm in place
    (``module``'s children are replaced; parameters and state-dict keys stay), so each forward normalises over
    every rank's batch and the running statistics agree on all ranks. Each SyncBatchNorm forward and backward
    is a collective, so every rank must make the same calls in the same order (the loop does), and the
    module must not need a double backward (input-gradient penalties): SyncBatchNorm has none.
    """
    if world_size() == 1:
        return module
    if sync_batchnorm and syncs_batchnorm(device):
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    device_ids = [device.index] if device.type == "cuda" else None
    # An explicit bucket cap also drops DDP's 1 MB first bucket: a GAN's G or D then all-reduces its gradients
    # in one call per update, not two: each gloo call has a fixed cost on CPU whatever its size.
    return DistributedDataParallel(
        module, device_ids=device_ids, forward_sync_buffers=False, bucket_cap_mb=BUCKET_CAP_MB
    )


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, DistributedDataParallel) else module


def average_buffers(module: nn.Module) -> None:
    """Make floating-point buffers (BatchNorm running statistics) equal on all ranks: their mean."""
    if world_size() == 1:
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(world_size())
        else:
            dist.broadcast(buffer, src=0)


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Average a dict of floats over ranks (every rank must call this with the same keys)."""
    if world_size() == 1 or not values:
        return values
    keys = sorted(values)
    backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    packed = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=backend_device)
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    return {k: v / world_size() for k, v in zip(keys, packed.tolist())}


def gather(value):
    """Every rank's ``value`` (any picklable object), in rank order."""
    if world_size() == 1:
        return [value]
    out = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def fingerprint(state_dict: dict) -> str:
    """SHA-256 of a state dict's tensors: equal fingerprints mean bit-identical replicas."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
