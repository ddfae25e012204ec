"""Plain-layout SO(3)-equivariant CNNs: archs 0-3 of the original lab notes.

A layout is a list of :class:`ConvSpec`; one builder per named layout returns it, and
:class:`EquivariantCNN` (or its twin ``plain.PlainCNN``) turns it into a network. Sides
below are for the study's 21^3 views; every stride lands exactly on the view's centre
voxel, which keeps the 90-degree rotations exact symmetries of the network.

=========  ==============================================================  ===========
layout     sides (s = stride 2, p = padded 3^3 conv, r = ``repeats`` p's)   widths
=========  ==============================================================  ===========
arch_0     21 -k5,s-> 9 -> 7 -> 5 -> 3 -> 1                                  ``channels``
arch_1     21 -> 19 -> ... -> 3 -> 1 (k3: 10 convs; k5: 21-17-13-9-5-1)      w * 21 / side
arch_2     21 -> 19 -> 17 -s-> 9 (r) -s-> 5 (r) -> 3 -> 1                    w, 2w, 4w
arch_3     21 -> 19 -s-> 9 (r) -> 7 -s-> 3 (r) -> 1                          w, 2w, 4w
=========  ==============================================================  ===========
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from . import fields
from ..task import INPUT_SIDE


@dataclass(frozen=True)
class ConvSpec:
    """One convolution of a layout: output width, kernel, stride and zero padding.

    ``channels`` counts regular representations in an equivariant network (35 tensor
    channels each) and plain channels in a plain twin.
    """

    channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0


def arch_0(channels: Sequence[int]) -> list[ConvSpec]:
    """The first model: 5 unpadded convs, kernels 5,3,3,3,3, strides 2,1,1,1,1."""
    if len(channels) != 5:
        raise ValueError(f"arch_0 has 5 convs, so 5 channels, not {list(channels)}")
    kernels, strides = (5, 3, 3, 3, 3), (2, 1, 1, 1, 1)
    return [ConvSpec(c, k, s) for c, k, s in zip(channels, kernels, strides)]


def arch_1(width: int, kernel_size: int) -> list[ConvSpec]:
    """No downsampling: unpadded convs of ``kernel_size`` down to 1 voxel (10 convs of
    3^3, or 5 of 5^3); a conv reading side ``n`` has ``round(width * 21 / n)`` reps."""
    sides = range(INPUT_SIDE, 1, -(kernel_size - 1))
    return [ConvSpec(round(width * INPUT_SIDE / side), kernel_size) for side in sides]


def arch_2(width: int, repeats: int) -> list[ConvSpec]:
    """Padded VGG-like: 21-19-17, strided 17-9 and 9-5 each followed by ``repeats``
    padded convs, then 5-3-1; the width doubles at each downsampling."""
    return [
        ConvSpec(width, 3), ConvSpec(width, 3),
        ConvSpec(2 * width, 3, stride=2, padding=1),
        *[ConvSpec(2 * width, 3, padding=1)] * repeats,
        ConvSpec(4 * width, 3, stride=2, padding=1),
        *[ConvSpec(4 * width, 3, padding=1)] * repeats,
        ConvSpec(4 * width, 3), ConvSpec(4 * width, 3),
    ]


def arch_3(width: int, repeats: int) -> list[ConvSpec]:
    """Shallowest: 21-19, strided 19-9, 9-7, strided 7-3, 3-1; ``repeats`` padded convs
    after each strided one; the width doubles at each downsampling."""
    return [
        ConvSpec(width, 3),
        ConvSpec(2 * width, 3, stride=2),
        *[ConvSpec(2 * width, 3, padding=1)] * repeats,
        ConvSpec(2 * width, 3),
        ConvSpec(4 * width, 3, stride=2),
        *[ConvSpec(4 * width, 3, padding=1)] * repeats,
        ConvSpec(4 * width, 3),
    ]


LAYOUTS = {"arch_0": arch_0, "arch_1": arch_1, "arch_2": arch_2, "arch_3": arch_3}
"""Layout builders by config name."""


def layout_sides(layers: Sequence[ConvSpec], side: int = INPUT_SIDE) -> list[int]:
    """Side of the input and of each conv's output; raises unless strides land on the
    centre voxel and the last side is 1."""
    sides = [side]
    for i, conv in enumerate(layers):
        span = side + 2 * conv.padding - conv.kernel_size
        if span < 0 or span % conv.stride:
            raise ValueError(f"conv {i} ({conv}) does not fit a side of {side}")
        side = span // conv.stride + 1
        sides.append(side)
    if side != 1:
        raise ValueError(f"layout ends at a side of {side}, not 1: {sides}")
    return sides


class EquivariantCNN(nn.Module):
    """A stack of (R3Conv, IIDBatchNorm3d, Fourier nonlinearity) on regular representations.

    The last conv, which reaches 1x1x1, has a bias and no batch norm: statistics over one
    voxel per example are too noisy (the original skipped it there too).

    Args:
        layers: the layout, e.g. ``arch_2(width=7, repeats=1)``.
        in_channels: scalar input channels (element channels of a view).
        fourier_function: key of ``fields.FOURIER_FUNCTIONS``.

    Shapes: ``(N, in_channels, 21, 21, 21) -> (N, 35 * layers[-1].channels, 1, 1, 1)``.
    """

    def __init__(self, layers: Sequence[ConvSpec], in_channels: int, fourier_function: str):
        super().__init__()
        layout_sides(layers)
        self.in_type = in_type = fields.trivial_type(in_channels)
        modules = []
        for i, conv in enumerate(layers):
            last = i == len(layers) - 1
            out_type = fields.fourier_type(conv.channels)
            modules.append(fields.conv3d(in_type, out_type, conv.kernel_size, stride=conv.stride,
                                         padding=conv.padding, bias=last))
            if not last:
                modules.append(fields.batch_norm(out_type))
            modules.append(fields.fourier_nonlinearity(out_type, fourier_function))
            in_type = out_type
        self.out_type = in_type
        self.out_channels = in_type.size
        self.layers = nn.Sequential(*modules)

    def forward(self, x):
        return self.layers(self.in_type(x)).tensor
