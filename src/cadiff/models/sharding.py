"""A denoiser sharded across the processes of a run (torch's FSDP2, `fully_shard`), for models whose weights and
fp32 gradient sums do not fit one device: each rank holds 1/N of every weight and of every sum, and gathers a
block's weights only while it runs. The blocks sharded one by one are the model's own `_no_split_modules` (the
units diffusers and accelerate never split); the rest of the denoiser is sharded as one more unit.

Every rank must then call the denoiser together, the same number of times (a gather per block per call), and
gradients arrive summed over the ranks, already sharded. Sharding is not undone: the pipeline samples as before as
long as every rank samples with it.

Example (every rank of `torchrun --nproc-per-node 4 -m cadiff attribute ... --accumulators sharded`):
    >>> shard_denoiser(pipe)                                  # doctest: +SKIP
"""

from __future__ import annotations

import torch

from cadiff.distributed import rank_and_world
from cadiff.models.loading import denoiser, keep_fingerprint, model_fingerprint


def is_sharded(module: torch.nn.Module) -> bool:
    """Whether `module` is an FSDP2-sharded module."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def shard_denoiser(pipe) -> torch.nn.Module:
    """Shard `pipe`'s denoiser across the ranks, in place (nothing if it is already): its `_no_split_modules`
    blocks one by one, then the rest. Gradients are reduced in fp32 and summed, not averaged, over the ranks. The
    model's fingerprint is the unsharded weights'. Returns the denoiser."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    net = denoiser(pipe)
    if is_sharded(net):
        return net
    fingerprint = model_fingerprint(net)  # of the whole weights, before they are split
    kind = "cuda" if dist.get_backend() == "nccl" else "cpu"
    mesh = init_device_mesh(kind, (rank_and_world()[1],))
    policy = MixedPrecisionPolicy(reduce_dtype=torch.float32)
    blocks = set(getattr(net, "_no_split_modules", None) or ())
    units = [m for m in reversed(list(net.modules())) if type(m).__name__ in blocks] + [net]  # inner ones first
    for unit in units:
        fully_shard(unit, mesh=mesh, mp_policy=policy)
        unit.set_gradient_divide_factor(1.0)  # a sum over the ranks, as the unsharded all-reduce gives,
        unit.set_force_sum_reduction_for_comms(True)  # by a plain SUM (gloo has no pre-multiplied one)
    keep_fingerprint(net, fingerprint)
    return net


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's part of a sharded tensor (the tensor itself when it is not sharded)."""
    from torch.distributed.tensor import DTensor

    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def whole(like: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
    """The full tensor whose parts the ranks hold as `part`, sharded as `like` (a parameter) is; `part` itself when
    `like` is not sharded. Every rank calls it together."""
    from torch.distributed.tensor import DTensor

    if not isinstance(like, DTensor):
        return part
    spread = DTensor.from_local(part.to(like.to_local().device), like.device_mesh, like.placements,
                                shape=like.shape, stride=like.stride())
    return spread.full_tensor()
