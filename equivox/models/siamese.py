"""The neighbour-location model: a Siamese encoder and a head giving 6 cube-face logits.

Class ``k`` means "view B is view A translated along face ``FACE_NAMES[k]`` of view A's
frame". The order is fixed project-wide by :mod:`equivox.task`, in the voxel frame (axis 0
of an ``(L, L, L)`` view is x, axis 1 is y, axis 2 is z)::

    index  0   1   2   3   4   5
    face  +x  -x  +y  -y  +z  -z

Encoders map ``(N, C, L, L, L)`` views to ``(N, F, 1, 1, 1)`` features. The head sees
the two views' features side by side, ``(B, 2F)``. For equivariant encoders these are
the full 1x1x1 fibers (Fourier coefficients), not just their invariant part: the label
turns with the views, so invariant features alone could not locate the neighbour.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..task import FACE_NAMES, FACES
from . import fields


class SiameseClassifier(nn.Module):
    """The same encoder on both views; their features concatenated; a head to 6 logits.

    Both views go through the encoder as one batch of ``2B``, so batch norm sees them
    together.

    Shapes: ``(B, 2, C, L, L, L) -> (B, 6)``.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        batch, n_views = views.shape[:2]
        features = self.encoder(views.flatten(0, 1))  # (2B, F, 1, 1, 1)
        if features.shape[2:] != (1, 1, 1):
            raise ValueError(f"encoder output is {tuple(features.shape[2:])} voxels, not 1x1x1: "
                             f"the layout does not fit {tuple(views.shape[3:])} views")
        return self.head(features.reshape(batch, n_views * features.shape[1]))  # (B, 2F)


class MlpHead(nn.Sequential):
    """(Linear-ReLU-Dropout) per hidden width, then Linear to the 6 logits.

    Shapes: ``(B, in_features) -> (B, 6)``.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], dropout: float):
        layers = []
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            in_features = width
        layers.append(nn.Linear(in_features, len(FACE_NAMES)))
        super().__init__(*layers)


class EquivariantHead(nn.Module):
    """An SO(3)-equivariant Fourier MLP whose output is a function on the sphere, read
    at the 6 cube-face directions.

    Hidden layers are (Linear, batch norm, Fourier nonlinearity) on regular
    representations; the last Linear maps to one band-limited function on S^2, whose
    values at ``FACES`` are the logits. Rotating both views by a
    90-degree rotation therefore permutes the logits as it permutes the faces.

    Args:
        in_type: escnn field type of the concatenated features of both views (0D space).
        hidden: width of each hidden layer in regular representations.
        function: Fourier nonlinearity, a key of ``fields.FOURIER_FUNCTIONS``.

    Shapes: ``(B, in_type.size) -> (B, 6)``.
    """

    def __init__(self, in_type, hidden: Sequence[int], function: str):
        super().__init__()
        self.in_type = in_type
        layers = []
        for width in hidden:
            hidden_type = fields.hidden_fourier_type(width)
            layers += [fields.linear(in_type, hidden_type, bias=False),
                       fields.batch_norm(hidden_type),
                       fields.fourier_nonlinearity(hidden_type, function)]
            in_type = hidden_type
        sphere = fields.sphere_type()
        layers.append(fields.linear(in_type, sphere))
        self.mlp = nn.Sequential(*layers)
        self.to_faces = fields.escnn_module().nn.InverseFourierTransform(
            sphere, fields.directions_to_elements(FACES))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        values = self.to_faces(self.mlp(self.in_type(features))).tensor  # (B, 1, 6)
        return values.flatten(1)
