"""SO(3)-equivariant ResNets on Fourier fields, with two residual block variants.

Layout (sides for 21^3 views)::

    stem     R3Conv 5^3 unpadded, IIDBatchNorm, Fourier nonlinearity     21 -> 17
    stage i  ``repeats[i]`` blocks; the first one maps outer_channels[i] -> [i + 1]
             and halves the side when pool_factors[i] == 2 (n -> (n + 1) / 2)
    final    R3Conv over the whole remaining side, Fourier nonlinearity      n -> 1

e.g. pool_factors [1, 2, 2, 2]: 17 -> 17 -> 9 -> 5 -> 3 -> 1. Every downsampling is
centred (odd sides only), so the 90-degree rotations stay exact symmetries.

Blocks (``outer`` = block input/output fields, ``inner`` = the fields between its convs):

* ``escnn``: the block of escnn's SE(3) example: conv 3^3 -> batch norm -> Fourier
  nonlinearity -> conv 3^3 (strided when downsampling) -> batch norm, plus a skip path
  (blurred strided pooling, then a 1^3 conv when the types differ); nothing after the sum.
* ``alpha``: pool first (Fourier extreme or average pooling), then conv 3^3 -> batch
  norm -> gated nonlinearity -> conv 3^3 -> batch norm, plus the skip (1^3 conv when the
  types differ), then a Fourier nonlinearity after the sum.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from . import fields
from ..task import INPUT_SIDE

STEM_KERNEL = 5


def per_stage(value: int | Sequence[int], stages: int, name: str) -> list[int]:
    """``value`` for each of ``stages`` stages: an int is repeated, a list must fit."""
    if isinstance(value, int):
        return [value] * stages
    if len(value) != stages:
        raise ValueError(f"{name} has {len(value)} entries for {stages} stages")
    return list(value)


def stage_sides(pool_factors: Sequence[int]) -> list[int]:
    """Side after the 5^3 stem and after each stage, for the study's 21^3 views.

    The last entry is the kernel of the final conv. Raises unless every downsampling
    by 2 reads an odd side (centred, hence exactly rotation-equivariant).
    """
    sides = [INPUT_SIDE - STEM_KERNEL + 1]
    for factor in pool_factors:
        side = sides[-1]
        if factor == 2 and side % 2 == 1 and side > 1:
            side = (side + 1) // 2
        elif factor != 1:
            raise ValueError(f"cannot pool a side of {side} by {factor}: sides {sides}")
        sides.append(side)
    return sides


def resnet_plan(outer_channels: Sequence[int], inner_channels: Sequence[int],
                repeats: int | Sequence[int], pool_factors: int | Sequence[int]):
    """``(stages, repeats per stage, pool factor per stage, sides)`` of a ResNet whose
    stages go from ``outer_channels[i]`` to ``outer_channels[i + 1]`` (escnn and plain)."""
    stages = len(outer_channels) - 1
    if len(inner_channels) != stages:
        raise ValueError(f"inner_channels needs one entry per stage ({stages}), "
                         f"got {list(inner_channels)}")
    pool_factors = per_stage(pool_factors, stages, "pool_factors")
    return stages, per_stage(repeats, stages, "repeats"), pool_factors, stage_sides(pool_factors)


def stem(in_type, out_type, function: str) -> list[nn.Module]:
    """The 5^3 stem of the escnn ResNets and DenseNets: conv, batch norm, Fourier nonlinearity."""
    return [fields.conv3d(in_type, out_type, STEM_KERNEL), fields.batch_norm(out_type),
            fields.fourier_nonlinearity(out_type, function)]


def to_one_voxel(field_type, side: int, function: str) -> list[nn.Module]:
    """The last layers of the escnn ResNets and DenseNets: a biased ``side``^3 conv to
    1x1x1, then a Fourier nonlinearity."""
    return [fields.conv3d(field_type, field_type, side, bias=True),
            fields.fourier_nonlinearity(field_type, function)]


class ToOneVoxelEncoder(nn.Module):
    """Base of the escnn ResNet and DenseNet: ``layers`` run in sequence on the
    ``in_type`` field and end at one voxel (:func:`to_one_voxel`).

    Shapes: ``(N, in_channels, 21, 21, 21) -> (N, out_type.size, 1, 1, 1)``.
    """

    def finish(self, layers: list[nn.Module], out_type, side: int, fourier_function: str) -> None:
        """Append the layers that reach one voxel; set ``out_type``, ``out_channels``, ``layers``."""
        layers += to_one_voxel(out_type, side, fourier_function)
        self.out_type = out_type
        self.out_channels = out_type.size
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(self.in_type(x)).tensor


class EscnnBlock(nn.Module):
    """Residual block of escnn's SE(3) example (3^3 kernels here, zero padding).

    Shapes: ``(N, in_type.size, n, n, n) -> (N, out_type.size, m, m, m)``, ``m = n`` or
    ``(n + 1) / 2`` when ``downsample``.
    """

    def __init__(self, in_type, inner_type, out_type, *, downsample: bool, fourier_function: str):
        super().__init__()
        stride = 2 if downsample else 1
        self.in_type, self.out_type = in_type, out_type
        self.body = nn.Sequential(
            fields.conv3d(in_type, inner_type, 3, padding=1),
            fields.batch_norm(inner_type),
            fields.fourier_nonlinearity(inner_type, fourier_function),
            fields.conv3d(inner_type, out_type, 3, stride=stride, padding=1),
            fields.batch_norm(out_type),
        )
        skip = [fields.antialiased_avg_pool(in_type, stride)] if downsample else []
        if in_type != out_type:
            skip.append(fields.conv3d(in_type, out_type, 1))
        self.skip = nn.Sequential(*skip) if skip else nn.Identity()

    def forward(self, x):
        return self.body(x) + self.skip(x)


class AlphaBlock(nn.Module):
    """Pool, gated then Fourier nonlinearities: the original notes' "alpha" block.

    Args:
        pool: ``"extreme"`` or ``"average"`` Fourier pooling (halves the side) or None.

    Shapes: ``(N, in_type.size, n, n, n) -> (N, out_type.size, m, m, m)``, ``m = n`` or
    ``(n + 1) / 2`` when pooling.
    """

    def __init__(self, in_type, inner_type, out_type, *, pool: str | None, fourier_function: str):
        super().__init__()
        gate = fields.gated_nonlinearity(inner_type)
        self.in_type, self.out_type = in_type, out_type
        self.pool = fields.FourierPool3d(in_type, pool) if pool else nn.Identity()
        self.body = nn.Sequential(
            fields.conv3d(in_type, gate.in_type, 3, padding=1),
            fields.batch_norm(gate.in_type),
            gate,
            fields.conv3d(gate.out_type, out_type, 3, padding=1),
            fields.batch_norm(out_type),
        )
        self.skip = (nn.Identity() if in_type == out_type
                     else fields.conv3d(in_type, out_type, 1))
        self.nonlinearity = fields.fourier_nonlinearity(out_type, fourier_function)

    def forward(self, x):
        x = self.pool(x)
        return self.nonlinearity(self.body(x) + self.skip(x))


class EquivariantResNet(ToOneVoxelEncoder):
    """Stem, stages of residual blocks, final conv to 1x1x1 (see the module docstring).

    Args:
        block: ``"escnn"`` or ``"alpha"``.
        in_channels: scalar input channels.
        outer_channels: regular representations after the stem and after each stage.
        inner_channels: regular representations inside the blocks of each stage.
        repeats: blocks per stage (int or one per stage).
        pool_factors: 1 or 2 per stage (int or one per stage).
        fourier_function: key of ``fields.FOURIER_FUNCTIONS``.
        pool: Fourier pooling of alpha blocks, ``"extreme"`` or ``"average"``; None for
            escnn blocks, which downsample with a strided conv.

    Shapes: ``(N, in_channels, 21, 21, 21) -> (N, 35 * outer_channels[-1], 1, 1, 1)``.
    """

    def __init__(self, block: str, in_channels: int, outer_channels: Sequence[int],
                 inner_channels: Sequence[int], repeats: int | Sequence[int],
                 pool_factors: int | Sequence[int], fourier_function: str,
                 pool: str | None = None):
        super().__init__()
        if block not in ("escnn", "alpha"):
            raise ValueError(f"block must be 'escnn' or 'alpha', not {block!r}")
        if (block == "alpha") != (pool is not None):
            raise ValueError("alpha blocks need a Fourier pool mode, escnn blocks take none")
        stages, repeats, pool_factors, sides = resnet_plan(outer_channels, inner_channels,
                                                          repeats, pool_factors)
        self.in_type = fields.trivial_type(in_channels)
        outer = [fields.fourier_type(c) for c in outer_channels]
        layers = stem(self.in_type, outer[0], fourier_function)
        for i in range(stages):
            inner = fields.fourier_type(inner_channels[i])
            for j in range(repeats[i]):
                first = j == 0
                in_type = outer[i] if first else outer[i + 1]
                downsample = first and pool_factors[i] == 2
                if block == "escnn":
                    layers.append(EscnnBlock(in_type, inner, outer[i + 1], downsample=downsample,
                                             fourier_function=fourier_function))
                else:
                    layers.append(AlphaBlock(in_type, inner, outer[i + 1],
                                             pool=pool if downsample else None,
                                             fourier_function=fourier_function))
        self.finish(layers, outer[-1], sides[-1], fourier_function)
