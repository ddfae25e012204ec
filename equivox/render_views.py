"""Pictures of view pairs, so a person can check views contain protein and labels are right.

Each pair is drawn as one image: view B is placed next to view A on the side its
label names, and the joined volume is summed along an axis perpendicular to that
face. Density that continues smoothly across the dashed boundary means B really sits
where the label says. Channels are coloured C grey, N blue, O red, other gold.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .views import FACE_NAMES, read_view_set  # noqa: E402

CHANNEL_RGB = np.array([[0.45, 0.45, 0.45], [0.15, 0.35, 0.95], [0.95, 0.15, 0.15], [0.95, 0.75, 0.1]])
AXIS_NAMES = "xyz"


def joined_projection(pair: np.ndarray, label: int):
    """(2, C, L, L, L) pair -> (RGB image (H, W, 3), displayed axes, boundary position)."""
    axis, sign = label // 2, 1 if label % 2 == 0 else -1
    a, b = pair[0], pair[1]
    joined = np.concatenate([a, b] if sign > 0 else [b, a], axis=1 + axis)  # (C, ...)
    projected_axis = (axis + 2) % 3  # perpendicular to the face normal
    shown = sorted({0, 1, 2} - {projected_axis})
    density = joined.sum(axis=1 + projected_axis)  # (C, n0, n1)
    n_channels = density.shape[0]
    colours = CHANNEL_RGB[np.minimum(np.arange(n_channels), len(CHANNEL_RGB) - 1)]
    # subtractive blend on white: a dense channel darkens towards its own colour
    scale = max(float(np.percentile(density.sum(axis=0), 99.5)), 1e-6)
    ink = np.einsum("chw,ck->hwk", np.clip(density / scale, 0, 1), 1 - colours)
    rgb = np.clip(1 - ink, 0, 1)
    return rgb, [AXIS_NAMES[i] for i in shown], shown.index(axis), a.shape[-1]


def render_view_pairs(views_path, png_path, svg_path, n_examples: int) -> None:
    views = read_view_set(views_path, n_examples)
    images, labels, n = views["images"], views["labels"], len(views["labels"])
    channels, resolution_A = list(views["attrs"]["channels"]), float(views["attrs"]["resolution_A"])
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.0 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        rgb, shown, joined_dim, length = joined_projection(images[k], int(labels[k]))
        extent_A = [0, rgb.shape[1] * resolution_A, rgb.shape[0] * resolution_A, 0]
        ax.imshow(rgb, extent=extent_A, interpolation="nearest")
        boundary_A = length * resolution_A
        line = ax.axhline if joined_dim == 0 else ax.axvline
        line(boundary_A, color="black", lw=1, ls="--")
        first, second = ("A", "B") if labels[k] % 2 == 0 else ("B", "A")
        for text, where_A in ((first, 0.5 * boundary_A), (second, 1.5 * boundary_A)):
            x, y = (0.5 * boundary_A, where_A) if joined_dim == 0 else (where_A, 0.5 * boundary_A)
            ax.text(x, y, text, ha="center", va="center", fontsize=14, color="tab:green",
                    weight="bold", alpha=0.8)
        ax.set_title(f"pair {k}: label {labels[k]} ({FACE_NAMES[labels[k]]})", fontsize=10)
        ax.set_ylabel(f"{shown[0]} (Å)")
        ax.set_xlabel(f"{shown[1]} (Å)")
    legend = ", ".join(f"{c}: {n}" for c, n in zip(channels, ["grey", "blue", "red", "gold"]))
    fig.suptitle(f"Validation view pairs, summed along the axis parallel to the shared face ({legend})",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    fig.savefig(svg_path)
    plt.close(fig)
