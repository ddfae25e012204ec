"""The geometry of the neighbour-location task, without torch (the DAG build reads it).

View B sits across one of view A's six faces; the label is that face, in this order
(view A's axes; image axes are (channel, x, y, z)):

    label  0   1   2   3   4   5
    face  +x  -x  +y  -y  +z  -z

**No atom in both views.** An atom is a sphere of radius ``r``; it touches a view when
its sphere overlaps the cube. The two cubes face each other across a gap of
``padding_A``, so one sphere can overlap both only if its diameter exceeds the gap:
``padding_A >= 2 * max(r)`` over the radii in use makes a shared atom impossible.
Below that an atom near the shared face is split between the facing boundary layers of
both views, and the label can be read off that seam without looking at structure
(docs/views.md has the measured numbers).
"""
from __future__ import annotations

import numpy as np

FACES = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64)
"""(6, 3) unit direction of each face in view A's axes, in label order."""
FACE_NAMES = ("+x", "-x", "+y", "-y", "+z", "-z")
OPPOSITE = (1, 0, 3, 2, 5, 4)
"""Label of the face opposite each face: view B's face that looks back at view A."""
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
"""Random stream of each split's examples: with one seed, the splits share no draws."""
VIEW_CONFIG_KEYS = ("length_voxels", "resolution_A", "channels", "element_radii_A",
                    "default_radius_A", "padding_A", "allow_shared_atoms", "require_all_faces",
                    "structure_weighting", "max_retries")
"""The keys of config ``views`` that a view sampler is made from
(``equivox.views.ViewParams.from_config``, with all of config ``origins``)."""
INPUT_SIDE = 21
"""Side of a view in voxels that every encoder maps to 1x1x1 (config ``views.length_voxels``
must equal it: :func:`view_config_errors`)."""


def largest_radius_A(views: dict) -> float:
    """Largest atom sphere radius a view config can use (config ``views`` section)."""
    return max([views["default_radius_A"], *views.get("element_radii_A", {}).values()])


def min_padding_A(views: dict) -> float:
    """Smallest gap between the two cubes at which no atom can touch both views."""
    return 2 * largest_radius_A(views)


def view_config_errors(views: dict) -> list[str]:
    """Problems with a config ``views`` section that the schema cannot express.

    Returns messages naming the key and what is allowed; empty when all is well.
    """
    errors = []
    if views["length_voxels"] != INPUT_SIDE:
        errors.append(
            f"config views.length_voxels: {views['length_voxels']} voxels, but every encoder "
            f"takes {INPUT_SIDE}-voxel views (equivox.task.INPUT_SIDE); allowed: {INPUT_SIDE}")
    need = min_padding_A(views)
    if views["padding_A"] < need - 1e-9 and not views.get("allow_shared_atoms", False):
        errors.append(
            f"config views.padding_A: {views['padding_A']:g} A lets one atom touch both views "
            f"(largest atom radius {largest_radius_A(views):g} A needs padding_A >= {need:g}); "
            "raise it, or set views.allow_shared_atoms: true to study the leak on purpose")
    return errors
