"""The architecture zoo: every model the study compares, built by name from config.

An architecture set (config/architectures/*.yaml) maps names to specifications that
the packaged schema equivox/schemas/architectures.schema.yaml validates
(:func:`equivox.config.load_architectures`)::

    arch_3_width_7_repeats_1: {family: escnn_cnn, layout: arch_3, width: 7, repeats: 1}

Typical use::

    specs = load_architectures("config/architectures/demo.yaml")
    model = build_model(name, specs[name])   # (B, 2, 4, 21, 21, 21) -> (B, 6) logits

Families, one module each: ``escnn_cnn`` (archs 0-3), ``escnn_resnet``,
``escnn_densenet`` and their Conv3d twins in ``plain``; the Siamese wrapper and the heads
are in ``siamese``; the cube-face order of the logits is :mod:`equivox.task`'s.
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from ..schema import load_architectures, validate_architectures
from . import fields
from .escnn_cnn import LAYOUTS, EquivariantCNN
from .escnn_densenet import EquivariantDenseNet
from .escnn_resnet import EquivariantResNet
from .plain import PlainCNN, PlainDenseNet, PlainResNet
from .siamese import EquivariantHead, MlpHead, SiameseClassifier

__all__ = [
    "FAMILIES", "HEADS", "build_model", "count_parameters", "load_architectures",
    "model_summary", "validate_architectures",
]

HEADS = ("mlp", "equivariant")


def _layout(spec: dict):
    """The layout a ``*_cnn`` spec names, built from the keys its builder takes."""
    builder = LAYOUTS[spec["layout"]]
    return builder(**{key: spec[key] for key in inspect.signature(builder).parameters})


def _escnn_cnn(spec: dict, in_channels: int) -> nn.Module:
    return EquivariantCNN(_layout(spec), in_channels, spec["fourier_function"])


def _escnn_resnet(spec: dict, in_channels: int) -> nn.Module:
    return EquivariantResNet(spec["block"], in_channels, spec["outer_channels"],
                             spec["inner_channels"], spec["repeats"], spec["pool_factors"],
                             spec["fourier_function"], pool=spec.get("pool"))


def _escnn_densenet(spec: dict, in_channels: int) -> nn.Module:
    return EquivariantDenseNet(in_channels, spec["transition_channels"], spec["growth_channels"],
                               spec["bottleneck_factor"], spec["block_depth"],
                               spec["pool_factors"], spec["fourier_function"], spec["pool"])


def _plain_cnn(spec: dict, in_channels: int) -> nn.Module:
    return PlainCNN(_layout(spec), in_channels)


def _plain_resnet(spec: dict, in_channels: int) -> nn.Module:
    return PlainResNet(in_channels, spec["outer_channels"], spec["inner_channels"],
                       spec["repeats"], spec["pool_factors"])


def _plain_densenet(spec: dict, in_channels: int) -> nn.Module:
    return PlainDenseNet(in_channels, spec["transition_channels"], spec["growth_channels"],
                         spec["bottleneck_factor"], spec["block_depth"], spec["pool_factors"])


FAMILIES = {
    "escnn_cnn": _escnn_cnn,
    "escnn_resnet": _escnn_resnet,
    "escnn_densenet": _escnn_densenet,
    "plain_cnn": _plain_cnn,
    "plain_resnet": _plain_resnet,
    "plain_densenet": _plain_densenet,
}
"""Encoder builder of each family: ``(spec with defaults, in_channels) -> encoder``."""


def _build_encoder(name: str, spec: dict, in_channels: int) -> nn.Module:
    try:
        return FAMILIES[spec["family"]](spec, in_channels)
    except ValueError as error:
        raise ValueError(f"architecture {name!r}: {error}") from error


def build_model(name: str, spec: dict, in_channels: int = 4, head: str = "mlp") -> nn.Module:
    """Build architecture ``name`` from its ``spec`` (validated, defaults filled).

    Args:
        name: architecture name (used in error messages).
        spec: one entry of an architecture set.
        in_channels: element channels of a view.
        head: ``"mlp"`` (Linear-ReLU-Dropout) or ``"equivariant"`` (Fourier MLP read at
            the cube faces; equivariant families only).

    Returns:
        A :class:`SiameseClassifier`: ``(B, 2, in_channels, 21, 21, 21) -> (B, 6)`` logits
        in :data:`equivox.task.FACE_NAMES` order.
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, not {head!r}")
    spec = validate_architectures({name: spec})[name]
    if head == "equivariant" and not spec["family"].startswith("escnn_"):
        raise ValueError(f"architecture {name!r}: the equivariant head needs an equivariant "
                         f"encoder, not family {spec['family']!r}")
    encoder = _build_encoder(name, spec, in_channels)
    if head == "mlp":
        head_module = MlpHead(2 * encoder.out_channels, spec["head_channels"], spec["head_dropout"])
    else:
        rep_size = fields.fourier_type(1).size
        hidden = [max(1, round(width / rep_size)) for width in spec["head_channels"]]
        head_module = EquivariantHead(fields.fiber_type(encoder.out_type, copies=2), hidden,
                                      spec["fourier_function"])
    return SiameseClassifier(encoder, head_module)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (escnn: basis coefficients, not expanded filters)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_summary(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...], int]]:
    """Run one input of ``input_shape`` (eval mode, no grad) and list the layers it
    passes: ``(qualified name, output shape, trainable parameters)`` in call order.

    A layer is a module without children or an escnn module (whose internals, such as
    basis expansions, are not listed), so the parameters of the rows add up to
    :func:`count_parameters`.
    """
    rows, handles = [], []

    def is_layer(module):
        return not list(module.children()) or type(module).__module__.startswith("escnn.")

    def record(name):
        def hook(module, inputs, output):
            shape = getattr(output, "tensor", output).shape
            rows.append((name, tuple(shape), count_parameters(module)))
        return hook

    inside_layer = ()
    for name, module in model.named_modules():
        if name and not name.startswith(inside_layer) and is_layer(module):
            handles.append(module.register_forward_hook(record(name)))
            inside_layer = (name + ".",)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.randn(input_shape))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return rows
