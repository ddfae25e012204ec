"""Non-equivariant twins of the equivariant encoders: Conv3d-BatchNorm3d-ReLU networks.

Each twin has its original's layout (same layouts, sides, strides, stage structure)
with plain channels in place of regular representations, and ``MaxPool3d(3, stride=2,
padding=1)`` wherever the original pools (n -> (n + 1) / 2, as the Fourier pooling).
Widths are set in the config so parameter counts are close to the original's
(docs/architectures.md lists both).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .escnn_cnn import ConvSpec, layout_sides
from .escnn_resnet import STEM_KERNEL, per_stage, resnet_plan, stage_sides


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, *,
                 stride: int = 1, padding: int = 0) -> list[nn.Module]:
    """Conv3d (no bias: batch norm follows), BatchNorm3d, ReLU."""
    return [nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                      bias=False),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True)]


def final_conv_relu(channels: int, side: int) -> list[nn.Module]:
    """Conv3d over the whole remaining side (with bias, no batch norm), ReLU: n -> 1."""
    return [nn.Conv3d(channels, channels, side), nn.ReLU(inplace=True)]


def max_pool() -> nn.Module:
    """Halves an odd side, centred: n -> (n + 1) / 2."""
    return nn.MaxPool3d(3, stride=2, padding=1)


class PlainCNN(nn.Sequential):
    """Twin of ``escnn_cnn.EquivariantCNN``: (Conv3d, BatchNorm3d, ReLU) per layout entry,
    the last conv with a bias and no batch norm.

    Shapes: ``(N, in_channels, 21, 21, 21) -> (N, layers[-1].channels, 1, 1, 1)``.
    """

    def __init__(self, layers: Sequence[ConvSpec], in_channels: int):
        layout_sides(layers)
        modules = []
        for conv in layers[:-1]:
            modules += conv_bn_relu(in_channels, conv.channels, conv.kernel_size,
                                    stride=conv.stride, padding=conv.padding)
            in_channels = conv.channels
        last = layers[-1]
        modules += [nn.Conv3d(in_channels, last.channels, last.kernel_size, stride=last.stride,
                              padding=last.padding),
                    nn.ReLU(inplace=True)]
        super().__init__(*modules)
        self.out_channels = last.channels


class BasicBlock(nn.Module):
    """Twin of the equivariant residual blocks: optional max pool, conv-BN-ReLU-conv-BN,
    a 1^3 conv skip when the widths differ, ReLU after the sum.

    Shapes: ``(N, in_channels, n, n, n) -> (N, out_channels, m, m, m)``, ``m = n`` or
    ``(n + 1) / 2`` when ``downsample``.
    """

    def __init__(self, in_channels: int, inner_channels: int, out_channels: int, *,
                 downsample: bool):
        super().__init__()
        self.pool = max_pool() if downsample else nn.Identity()
        self.body = nn.Sequential(
            *conv_bn_relu(in_channels, inner_channels, 3, padding=1),
            nn.Conv3d(inner_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm3d(out_channels),
        )
        self.skip = (nn.Identity() if in_channels == out_channels
                     else nn.Conv3d(in_channels, out_channels, 1, bias=False))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        return self.relu(self.body(x) + self.skip(x))


class PlainResNet(nn.Sequential):
    """Twin of ``escnn_resnet.EquivariantResNet`` (same arguments, plain channels).

    Shapes: ``(N, in_channels, 21, 21, 21) -> (N, outer_channels[-1], 1, 1, 1)``.
    """

    def __init__(self, in_channels: int, outer_channels: Sequence[int],
                 inner_channels: Sequence[int], repeats: int | Sequence[int],
                 pool_factors: int | Sequence[int]):
        stages, repeats, pool_factors, sides = resnet_plan(outer_channels, inner_channels,
                                                          repeats, pool_factors)
        layers = conv_bn_relu(in_channels, outer_channels[0], STEM_KERNEL)
        for i in range(stages):
            for j in range(repeats[i]):
                layers.append(BasicBlock(outer_channels[i] if j == 0 else outer_channels[i + 1],
                                         inner_channels[i], outer_channels[i + 1],
                                         downsample=j == 0 and pool_factors[i] == 2))
        layers += final_conv_relu(outer_channels[-1], sides[-1])
        super().__init__(*layers)
        self.out_channels = outer_channels[-1]


class DenseLayer(nn.Module):
    """Twin of the equivariant dense layer: 1^3 conv-BN-ReLU to the bottleneck, 3^3
    conv-BN-ReLU to ``growth_channels``; returns only the new features.

    Shapes: ``(N, in_channels, n, n, n) -> (N, growth_channels, n, n, n)``.
    """

    def __init__(self, in_channels: int, growth_channels: int, bottleneck_factor: int):
        super().__init__()
        bottleneck = bottleneck_factor * growth_channels
        self.layers = nn.Sequential(*conv_bn_relu(in_channels, bottleneck, 1),
                                    *conv_bn_relu(bottleneck, growth_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DenseBlock(nn.ModuleList):
    """``depth`` dense layers, each reading the concatenation of everything before it.

    Shapes: ``(N, C, n, n, n) -> (N, C + depth * growth_channels, n, n, n)``.
    """

    def __init__(self, in_channels: int, depth: int, growth_channels: int, bottleneck_factor: int):
        super().__init__(DenseLayer(in_channels + i * growth_channels, growth_channels,
                                    bottleneck_factor) for i in range(depth))
        self.out_channels = in_channels + depth * growth_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class PlainDenseNet(nn.Sequential):
    """Twin of ``escnn_densenet.EquivariantDenseNet`` (same arguments, plain channels).

    Shapes: ``(N, in_channels, 21, 21, 21) -> (N, transition_channels[-1], 1, 1, 1)``.
    """

    def __init__(self, in_channels: int, transition_channels: Sequence[int], growth_channels: int,
                 bottleneck_factor: int, block_depth: int | Sequence[int],
                 pool_factors: int | Sequence[int]):
        blocks = len(transition_channels) - 1
        block_depth = per_stage(block_depth, blocks, "block_depth")
        pool_factors = per_stage(pool_factors, blocks, "pool_factors")
        sides = stage_sides(pool_factors)
        layers = conv_bn_relu(in_channels, transition_channels[0], STEM_KERNEL)
        for i in range(blocks):
            block = DenseBlock(transition_channels[i], block_depth[i], growth_channels,
                               bottleneck_factor)
            layers += [block,
                       nn.Conv3d(block.out_channels, transition_channels[i + 1], 1, bias=False),
                       nn.BatchNorm3d(transition_channels[i + 1])]
            if pool_factors[i] == 2:
                layers.append(max_pool())
        layers += final_conv_relu(transition_channels[-1], sides[-1])
        super().__init__(*layers)
        self.out_channels = transition_channels[-1]
