"""Scale-out with PyTorch's own engine: torchrun, DistributedDataParallel, SyncBatchNorm, sharded sampling.

Launch one process per GPU (or a few CPU processes) with ``torchrun``; each reads its rank from the
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, set by torchrun)::

    torchrun --nproc_per_node 8 -m atrous train ...                       # one node, 8 GPUs
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d \\
             --rdzv_endpoint HOST:29400 -m atrous train ...              # two nodes

Design, so that a run gives the same result whatever the number of processes:

* the global batch is fixed (``batch_size``); each of ``W`` processes takes ``batch_size / W``;
* :class:`ShardedBatchSampler` gives step ``t`` of an epoch the samples ``perm[t B : (t + 1) B]`` of
  one permutation drawn from (seed, epoch), split between the ranks, so the global batch of a step
  does not depend on ``W``, and a resumed run skips exactly the steps already done;
* the loss is the sum over the labelled pixels of all ranks divided by their global count (one
  all-reduce), scaled by ``W`` since DDP averages gradients: the gradient is the one-process gradient;
* BatchNorm statistics are synchronised: ``torch.nn.SyncBatchNorm`` on GPUs; on CPU (gloo), where
  torch's SyncBatchNorm refuses to run, :class:`GlooSyncBatchNorm2d` computes the same statistics with
  differentiable all-reduces;
* only rank 0 logs, draws the progress bar and writes checkpoints; checkpoints hold the plain
  (unwrapped) model, so a run resumes on any number of processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

__all__ = [
    "DistributedContext",
    "GlooSyncBatchNorm2d",
    "ShardedBatchSampler",
    "all_reduce_sum",
    "convert_sync_batchnorm",
    "setup_distributed",
    "shard_indices",
]


@dataclass
class DistributedContext:
    """Where this process stands: rank, world size, local rank and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False  # this context created the process group (and destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.initialized_here and dist.is_initialized():
            dist.destroy_process_group()
            self.initialized_here = False


def setup_distributed(device: str = "auto", backend: str | None = None) -> DistributedContext:
    """Join the process group that torchrun describes in the environment (``WORLD_SIZE`` > 1), or
    run alone. ``device``: "auto" (cuda:LOCAL_RANK when CUDA is available, else cpu), "cpu" or "cuda".
    ``backend``: None picks nccl for CUDA and gloo for CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"setup_distributed: expected device 'auto', 'cpu', 'cuda' or 'cuda:N', "
                         f"got {device!r}")
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError(f"setup_distributed: device {device!r} asked for, but CUDA is not available")
    if use_cuda:
        index = int(device.split(":")[1]) if ":" in device else local_rank
        torch_device = torch.device("cuda", index)
        torch.cuda.set_device(torch_device)
    else:
        torch_device = torch.device("cpu")
    ctx = DistributedContext(rank, world_size, local_rank, torch_device)
    if world_size > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if use_cuda else "gloo")
        dist.init_process_group(backend=backend, device_id=torch_device if use_cuda else None)
        ctx.initialized_here = True
    elif world_size > 1:
        ctx.rank, ctx.world_size = dist.get_rank(), dist.get_world_size()
    return ctx


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes (in place, returned); the identity when not distributed."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


class _DifferentiableAllReduce(torch.autograd.Function):
    """Sum over processes whose backward is a sum over processes too: each process's statistics feed every
    process's loss, so each receives the sum of all their gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlooSyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the batch of every process, on any device and backend.

    ``torch.nn.SyncBatchNorm`` runs on GPUs only (its statistics kernels are CUDA kernels; on CPU it
    raises). This layer computes the same thing in plain tensor code: per-channel sums of ``x`` and
    ``x^2`` and the pixel count, summed over processes by a differentiable all-reduce, so autograd also
    sums the statistics' gradients across processes. With
    one process, or in eval mode, it is an ordinary BatchNorm2d. Same parameters and buffers, so state
    dicts load into and from ``nn.BatchNorm2d``.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        synced = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not (self.training and synced):
            return super().forward(input)
        # float16 under autocast: statistics in float32
        x = input if input.dtype in (torch.float32, torch.float64) else input.float()
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count])  # (2C + 1,)
        stats = _DifferentiableAllReduce.apply(stats)
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp(min=0)  # biased: what normalises the batch
        if n.item() <= 1:  # one value per channel over all processes: as PooledBatchNorm2d, use running stats
            return F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias, False,
                                0.0, self.eps)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum
                if momentum is None:  # cumulative average, as nn.BatchNorm2d
                    momentum = 1.0 / float(self.num_batches_tracked)
                unbiased = (var.detach() * n / (n - 1)).to(self.running_var.dtype)
                batch_mean = mean.detach().to(self.running_mean.dtype)
                self.running_mean.mul_(1 - momentum).add_(momentum * batch_mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
        shape = (1, c, 1, 1)
        y = (x - mean.reshape(shape)) * torch.rsqrt(var.reshape(shape) + self.eps)  # (N, C, H, W)
        if self.affine:
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        return y.to(input.dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """Every BatchNorm2d (including :class:`~atrous.nn.PooledBatchNorm2d`) synchronised across processes:
    ``torch.nn.SyncBatchNorm`` on CUDA, :class:`GlooSyncBatchNorm2d` elsewhere. Parameters, buffers and
    their values are kept (the module is replaced, the tensors are shared). Returns the model."""
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def convert(module: nn.Module) -> nn.Module:
        if isinstance(module, nn.BatchNorm2d) and not isinstance(module, GlooSyncBatchNorm2d):
            new = GlooSyncBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                      module.track_running_stats, device=None)
            if module.affine:
                new.weight, new.bias = module.weight, module.bias
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
            new.train(module.training)
            return new
        for name, child in module.named_children():
            new_child = convert(child)
            if new_child is not child:
                setattr(module, name, new_child)
        return module

    return convert(model)


class ShardedBatchSampler(DistributedSampler):
    """A :class:`~torch.utils.data.DistributedSampler` that yields this rank's part of each global batch.

    Epoch ``e`` draws one permutation of the dataset from ``(seed, e)`` (as DistributedSampler does),
    keeps ``steps_per_epoch = len // global_batch`` full global batches (drop_last at the global
    level) and gives rank ``r`` of ``W`` the slice ``[r b, (r + 1) b)`` of each (``b = global_batch / W``).
    So the samples of a step are the same for any ``W``; :meth:`set_epoch` with ``start_step`` skips
    the steps a resumed run has done. Use it as a DataLoader's ``batch_sampler``.
    """

    def __init__(self, dataset_length: int, global_batch: int, *, num_replicas: int = 1, rank: int = 0,
                 seed: int = 0, shuffle: bool = True) -> None:
        if global_batch < 1 or global_batch % num_replicas:
            raise ValueError(f"ShardedBatchSampler: expected a global batch divisible by the {num_replicas} "
                             f"processes, got {global_batch}")
        if dataset_length < global_batch:
            raise ValueError(f"ShardedBatchSampler: the dataset has {dataset_length} samples, fewer than one "
                             f"global batch of {global_batch}")
        # DistributedSampler only reads len(dataset); a range stands in for it.
        super().__init__(range(dataset_length), num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed, drop_last=True)
        self.dataset_length = dataset_length
        self.global_batch, self.local_batch = global_batch, global_batch // num_replicas
        self.steps_per_epoch = dataset_length // global_batch
        self.start_step = 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ValueError(f"ShardedBatchSampler.set_epoch: expected 0 <= start_step <= "
                             f"{self.steps_per_epoch}, got {start_step}")
        super().set_epoch(epoch)
        self.start_step = start_step

    def permutation(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.dataset_length))
        g = torch.Generator().manual_seed(self.seed + self.epoch)  # DistributedSampler's rule
        return torch.randperm(self.dataset_length, generator=g).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        perm = self.permutation()
        for step in range(self.start_step, self.steps_per_epoch):
            first = step * self.global_batch + self.rank * self.local_batch
            yield perm[first:first + self.local_batch]

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start_step


def shard_indices(length: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """Evaluation shard: every ``world_size``-th index from ``rank``, no padding or repeats, so the
    summed confusion matrices count each pixel exactly once."""
    return list(range(rank, length, world_size))
