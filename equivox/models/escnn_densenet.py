"""SO(3)-equivariant DenseNets on Fourier fields.

Layout (sides for 21^3 views)::

    stem          R3Conv 5^3 unpadded, IIDBatchNorm, Fourier nonlinearity    21 -> 17
    block i       ``block_depth[i]`` dense layers, each adding ``growth_channels``
                  regular representations to the concatenated features
    transition i  R3Conv 1^3 to transition_channels[i + 1], IIDBatchNorm, Fourier
                  pooling when pool_factors[i] == 2 (n -> (n + 1) / 2)
    final         R3Conv over the whole remaining side, Fourier nonlinearity    n -> 1

A dense layer is the DenseNet-BC bottleneck with equivariant nonlinearities:
R3Conv 1^3 to ``bottleneck_factor * growth_channels`` (plus one gate each), batch norm,
gated nonlinearity, R3Conv 3^3 (padded) to ``growth_channels``, batch norm, Fourier
nonlinearity.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from . import fields
from .escnn_resnet import ToOneVoxelEncoder, per_stage, stage_sides, stem


class DenseLayer(nn.Module):
    """Bottleneck dense layer; returns only the new features.

    Shapes: ``(N, in_type.size, n, n, n) -> (N, 35 * growth_channels, n, n, n)``.
    """

    def __init__(self, in_type, growth_channels: int, bottleneck_factor: int,
                 fourier_function: str):
        super().__init__()
        gate = fields.gated_nonlinearity(fields.fourier_type(bottleneck_factor * growth_channels))
        self.out_type = fields.fourier_type(growth_channels)
        self.layers = nn.Sequential(
            fields.conv3d(in_type, gate.in_type, 1),
            fields.batch_norm(gate.in_type),
            gate,
            fields.conv3d(gate.out_type, self.out_type, 3, padding=1),
            fields.batch_norm(self.out_type),
            fields.fourier_nonlinearity(self.out_type, fourier_function),
        )

    def forward(self, x):
        return self.layers(x)


class DenseBlock(nn.Module):
    """``depth`` dense layers, each reading the concatenation of the input and all
    earlier layers' outputs.

    Shapes: ``(N, in_type.size, n, n, n) -> (N, in_type.size + depth * 35 * growth, n, n, n)``.
    """

    def __init__(self, in_type, depth: int, growth_channels: int, bottleneck_factor: int,
                 fourier_function: str):
        super().__init__()
        layers = []
        for _ in range(depth):
            layers.append(DenseLayer(in_type, growth_channels, bottleneck_factor, fourier_function))
            in_type = fields.escnn_module().nn.FieldType(
                in_type.gspace, list(in_type.representations) + list(layers[-1].out_type.representations))
        self.out_type = in_type
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        for layer in self.layers:
            x = fields.directsum([x, layer(x)])
        return x


class EquivariantDenseNet(ToOneVoxelEncoder):
    """Stem, dense blocks with transitions, final conv to 1x1x1 (see the module docstring).

    Args:
        in_channels: scalar input channels.
        transition_channels: regular representations after the stem and after each
            transition (one block per transition).
        growth_channels: regular representations each dense layer adds.
        bottleneck_factor: bottleneck width, in multiples of ``growth_channels``.
        block_depth: dense layers per block (int or one per block).
        pool_factors: 1 or 2 per block (int or one per block).
        fourier_function: key of ``fields.FOURIER_FUNCTIONS``.
        pool: Fourier pooling of the transitions, ``"extreme"`` or ``"average"``.

    Shapes: ``(N, in_channels, 21, 21, 21) -> (N, 35 * transition_channels[-1], 1, 1, 1)``.
    """

    def __init__(self, in_channels: int, transition_channels: Sequence[int], growth_channels: int,
                 bottleneck_factor: int, block_depth: int | Sequence[int],
                 pool_factors: int | Sequence[int], fourier_function: str, pool: str = "extreme"):
        super().__init__()
        blocks = len(transition_channels) - 1
        block_depth = per_stage(block_depth, blocks, "block_depth")
        pool_factors = per_stage(pool_factors, blocks, "pool_factors")
        sides = stage_sides(pool_factors)

        self.in_type = fields.trivial_type(in_channels)
        transition = [fields.fourier_type(c) for c in transition_channels]
        layers = stem(self.in_type, transition[0], fourier_function)
        for i in range(blocks):
            block = DenseBlock(transition[i], block_depth[i], growth_channels,
                               bottleneck_factor, fourier_function)
            layers += [block,
                       fields.conv3d(block.out_type, transition[i + 1], 1),
                       fields.batch_norm(transition[i + 1])]
            if pool_factors[i] == 2:
                layers.append(fields.FourierPool3d(transition[i + 1], pool))
        self.finish(layers, transition[-1], sides[-1], fourier_function)
