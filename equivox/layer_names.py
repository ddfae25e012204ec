"""Readable names of a model's layers, for figures and tables: where a layer sits in the
architecture (stage, block, part), not its module path. Examples:

* ``conv 2``: after the 2nd convolution of a plain layout (escnn_cnn, plain_cnn; archs
  0-3), counted in forward order (``encoder.layers.5``, ``encoder.5``);
* ``stem``: in a ResNet or DenseNet, before the first block (``encoder.layers.2``);
* ``stage 2 · block 1 · inner``: inside the 1st residual block of stage 2, stages as in
  the spec's ``repeats`` (``encoder.layers.4.body.2``); ``... · out``: the block's
  last part, the nonlinearity after the sum with the skip (``encoder.layers.4.nonlinearity``,
  ``encoder.4.relu``);
* ``dense 1 · layer 2 · inner`` / ``out``: the bottleneck and the last nonlinearity of
  the 2nd dense layer of dense block 1 (``encoder.layers.3.layers.1.layers.2``);
* ``final``: after the last block, the conv to one voxel (``encoder.layers.7``);
* ``head 1``: after the head's 1st linear layer (``head.1``, ``head.mlp.2``).

An equivariant model and its plain twin get the same names, layer for layer.
"""
from __future__ import annotations

from torch import nn

from .models import escnn_densenet, escnn_resnet, plain
from .models.escnn_resnet import per_stage
from .models.fields import escnn_module

RESIDUAL_BLOCKS = (escnn_resnet.EscnnBlock, escnn_resnet.AlphaBlock, plain.BasicBlock)
DENSE_BLOCKS = (escnn_densenet.DenseBlock, plain.DenseBlock)
SEPARATOR = " · "


def _weight_layers() -> tuple[type, ...]:
    enn = escnn_module().nn
    return (nn.Conv3d, nn.Linear, enn.R3Conv, enn.Linear)


def _name_all(names: dict, path: str, module: nn.Module, name: str) -> None:
    """``name`` for ``module`` (at ``path``) and everything inside it."""
    for sub, _ in module.named_modules():
        names[f"{path}.{sub}" if sub else path] = name


def _name_parts(names: dict, path: str, unit: nn.Module, name: str) -> None:
    """A block or dense layer: its last child is ``out`` (the nonlinearity after the
    sum, or the layer's last one), everything before it ``inner``."""
    while len(list(unit.children())) == 1:  # a dense layer wraps one Sequential
        child, unit = next(unit.named_children())
        path = f"{path}.{child}"
    children = list(unit.named_children())
    for i, (child, module) in enumerate(children):
        part = "out" if i == len(children) - 1 else "inner"
        _name_all(names, f"{path}.{child}", module, name + SEPARATOR + part)


def _name_sequence(names: dict, path: str, sequence: nn.Module, prefix: str) -> None:
    """``<prefix> k``: after the k-th weight layer (conv or linear) of a plain sequence."""
    count = 0
    for child, module in sequence.named_children():
        count += isinstance(module, _weight_layers())
        _name_all(names, f"{path}.{child}", module, f"{prefix} {max(count, 1)}")


def _block_stages(spec: dict, n_blocks: int) -> list[tuple[int, int]]:
    """(stage, block in stage), 1-based, of each residual block in forward order."""
    stages = per_stage(spec["repeats"], len(spec["outer_channels"]) - 1, "repeats")
    plan = [(stage, block) for stage, count in enumerate(stages, start=1)
            for block in range(1, count + 1)]
    if len(plan) != n_blocks:
        raise ValueError(f"{n_blocks} residual blocks, but repeats {spec['repeats']} plan {len(plan)}")
    return plan


def layer_names(model: nn.Module, spec: dict) -> dict[str, str]:
    """Module path -> readable name (module docstring) of every module of a
    :class:`equivox.models.siamese.SiameseClassifier` built from ``spec``."""
    names: dict[str, str] = {}
    encoder = model.encoder
    path, sequence = ("encoder.layers", encoder.layers) if hasattr(encoder, "layers") else ("encoder", encoder)
    children = list(sequence.named_children())
    blocks = [i for i, (_, module) in enumerate(children) if isinstance(module, (*RESIDUAL_BLOCKS, *DENSE_BLOCKS))]
    if not blocks:
        _name_sequence(names, path, sequence, "conv")
    else:
        residual = [i for i in blocks if isinstance(children[i][1], RESIDUAL_BLOCKS)]
        stages = dict(zip(residual, _block_stages(spec, len(residual)))) if residual else {}
        dense = 0
        for i, (child, module) in enumerate(children):
            where = f"{path}.{child}"
            if i in stages:
                _name_parts(names, where, module, f"stage {stages[i][0]}{SEPARATOR}block {stages[i][1]}")
            elif isinstance(module, DENSE_BLOCKS):
                dense += 1
                layers = module.layers if hasattr(module, "layers") else module
                inner = f"{where}.layers" if hasattr(module, "layers") else where
                names[where] = f"dense {dense}"
                for j, (sub, layer) in enumerate(layers.named_children(), start=1):
                    _name_parts(names, f"{inner}.{sub}", layer, f"dense {dense}{SEPARATOR}layer {j}")
            else:
                _name_all(names, where, module, "stem" if i < blocks[0] else
                          "final" if i > blocks[-1] else f"transition {dense}")
    head = model.head
    _name_sequence(names, "head.mlp" if hasattr(head, "mlp") else "head",
                   head.mlp if hasattr(head, "mlp") else head, "head")
    return names
