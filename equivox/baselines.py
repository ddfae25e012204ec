"""Baselines that do not look at protein structure, beside which every model is read.

A model's accuracy means something only above what a rule that ignores structure gets
on the same pairs. For a view pair ``(A, B)`` (images ``(C, L, L, L)``, axes channel, x,
y, z) and each face ``f`` (``task.FACES`` order), with ``slab(V, f, d)`` the outer ``d``
voxel layers of view ``V`` on face ``f``:

* ``chance``: 1/6, what a constant or random guess gets (labels are uniform);
* ``seam``: ``<slab(A, f, 1), slab(B, opposite(f), 1)>``, the match of the two boundary
  layers that would face each other; it wins when atoms are split across the two views
  (padding below ``task.min_padding_A``) or density runs on across a thin gap;
* ``view_a``: total density of ``slab(A, f, 3)``: view B sits where A is dense;
* ``view_b``: total density of ``slab(B, opposite(f), 3)``: B is dense toward A;
* ``slab_logistic``: a learned but structure-blind model, multinomial logistic regression
  on the per-channel density of every 3-layer boundary slab of both views plus the 6
  seam scores (``2 * 6 * C + 6`` features, standardised), fitted on training pairs.

Each rule predicts the argmax over faces of its score. The *best baseline* is the one
with the highest validation accuracy; its test accuracy is the reference a model must
beat (``results/analysis/baselines/{val,test}.json``; docs/analyses.md).
"""
from __future__ import annotations

import numpy as np
import torch

from .task import FACE_NAMES, OPPOSITE
from .views import images_from_pairs, pack_atoms, view_set_batches

SLAB_DEPTH = 3
"""Voxel layers in the density slabs (``view_a``, ``view_b``, ``slab_logistic``)."""
RULES = ("seam", "view_a", "view_b")


def face_slab(images: torch.Tensor, face: int, depth: int) -> torch.Tensor:
    """The outer ``depth`` layers on ``face`` of images ``(..., C, L, L, L)``.

    Returns ``(..., C, depth, L, L)`` with the layer axis moved first and ordered from
    the face inwards.
    """
    axis = images.dim() - 3 + face // 2
    if face % 2 == 0:   # + face: the last layers
        slab = images.narrow(axis, images.shape[axis] - depth, depth).flip(axis)
    else:
        slab = images.narrow(axis, 0, depth)
    return slab.movedim(axis, images.dim() - 3)


def rule_scores(pairs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scores ``(N, 6)`` of each non-learned rule for pairs ``(N, 2, C, L, L, L)``."""
    a, b = pairs[:, 0].float(), pairs[:, 1].float()
    seam, view_a, view_b = [], [], []
    for f in range(len(FACE_NAMES)):
        seam.append((face_slab(a, f, 1) * face_slab(b, OPPOSITE[f], 1)).flatten(1).sum(1))
        view_a.append(face_slab(a, f, SLAB_DEPTH).flatten(1).sum(1))
        view_b.append(face_slab(b, OPPOSITE[f], SLAB_DEPTH).flatten(1).sum(1))
    return {"seam": torch.stack(seam, 1), "view_a": torch.stack(view_a, 1),
            "view_b": torch.stack(view_b, 1)}


def slab_features(pairs: torch.Tensor) -> torch.Tensor:
    """Structure-blind features ``(N, 12 C + 6)``: per-channel density of each face's
    3-layer slab of view A, then of view B, then the 6 seam scores."""
    per_view = [face_slab(pairs[:, v].float(), f, SLAB_DEPTH).sum((-3, -2, -1))
                for v in (0, 1) for f in range(len(FACE_NAMES))]  # each (N, C)
    return torch.cat([*per_view, rule_scores(pairs)["seam"]], 1)


class SlabLogistic:
    """Multinomial logistic regression on :func:`slab_features` (L2 penalty ``l2``)."""

    def __init__(self, l2: float = 1e-3):
        self.l2 = l2

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> "SlabLogistic":
        x = features.double()
        self.mean, self.scale = x.mean(0), x.std(0).clamp_min(1e-8)
        x = (x - self.mean) / self.scale
        self.weight = torch.zeros(x.shape[1], len(FACE_NAMES), dtype=torch.float64, requires_grad=True)
        self.bias = torch.zeros(len(FACE_NAMES), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([self.weight, self.bias], max_iter=500, line_search_fn="strong_wolfe")

        def loss():
            optimizer.zero_grad()
            value = (torch.nn.functional.cross_entropy(x @ self.weight + self.bias, labels)
                     + self.l2 * self.weight.pow(2).sum())
            value.backward()
            return value

        optimizer.step(loss)
        return self

    @torch.no_grad()
    def scores(self, features: torch.Tensor) -> torch.Tensor:
        return ((features.double() - self.mean) / self.scale) @ self.weight + self.bias


def predictions(pairs_batches, model: SlabLogistic | None = None) -> dict[str, np.ndarray]:
    """Predicted face per pair ``(n,)`` of every baseline, over batches of image pairs
    ``(B, 2, C, L, L, L)``; ``slab_logistic`` only when a fitted ``model`` is given."""
    out: dict[str, list] = {}
    for pairs in pairs_batches:
        scores = rule_scores(pairs)
        if model is not None:
            scores["slab_logistic"] = model.scores(slab_features(pairs))
        for name, value in scores.items():
            out.setdefault(name, []).append(value.argmax(1).numpy())
    return {name: np.concatenate(parts) for name, parts in out.items()}


def evaluate_baselines(predicted: dict[str, np.ndarray], labels: np.ndarray, confidence: float) -> list[dict]:
    """One row per baseline: name, n, correct, accuracy and its Wilson interval; chance first."""
    from .evaluate import wilson_interval

    n = len(labels)
    rows = [{"baseline": "chance", "n_examples": n, "correct": None, "accuracy": 1 / len(FACE_NAMES),
             "accuracy_ci_low": 1 / len(FACE_NAMES), "accuracy_ci_high": 1 / len(FACE_NAMES)}]
    for name, guess in predicted.items():
        correct = int((guess == labels).sum())
        low, high = wilson_interval(correct, n, confidence)
        rows.append({"baseline": name, "n_examples": n, "correct": correct, "accuracy": correct / n,
                     "accuracy_ci_low": low, "accuracy_ci_high": high})
    return rows


def training_features(sampler, n_pairs: int, batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`slab_features` and labels of training pairs ``0 .. n_pairs - 1`` of ``sampler``."""

    features, labels = [], []
    for start in range(0, n_pairs, batch_size):
        pairs = [sampler.sample(i) for i in range(start, min(start + batch_size, n_pairs))]
        features.append(slab_features(images_from_pairs(pack_atoms(pairs), len(pairs), sampler.params.image)))
        labels.append(torch.tensor([p.label for p in pairs]))
    return torch.cat(features), torch.cat(labels)


def compute_baselines(view_sets: dict[str, str], training, confidence: float) -> dict:
    """Every baseline on every fixed view set, and the best one.

    Args:
        view_sets: split name -> HDF5 view set (must include "val").
        training: ``(features, labels)`` of training pairs to fit ``slab_logistic`` on
            (:func:`training_features`); None leaves it out.
        confidence: level of the Wilson intervals.

    Returns ``{"best": name, "chosen_on": "val", "confidence", "n_train", "sets": {split:
    {"rows": [...], "labels": [...], "predicted": {name: [...]}}}}``; ``best`` has the
    highest validation accuracy among the baselines other than chance.
    """
    model = SlabLogistic().fit(*training) if training is not None else None
    sets = {}
    for split, path in view_sets.items():
        batches = list(view_set_batches(path))
        labels = np.concatenate([y for _, y in batches])
        predicted = predictions((x for x, _ in batches), model)
        sets[split] = {"rows": evaluate_baselines(predicted, labels, confidence),
                       "labels": labels.tolist(),
                       "predicted": {name: guess.tolist() for name, guess in predicted.items()}}
    val_rows = [row for row in sets["val"]["rows"] if row["baseline"] != "chance"]
    best = max(val_rows, key=lambda row: row["accuracy"])["baseline"]
    return {"best": best, "chosen_on": "val", "confidence": confidence,
            "n_train": 0 if training is None else int(len(training[1])), "sets": sets}


def margin_over_best(test: dict, baselines: dict) -> dict:
    """A model's test accuracy minus the best baseline's, on the same test pairs.

    ``test``: an :func:`equivox.evaluate.evaluate_test` record (first ``n`` pairs of the
    test set); ``baselines``: a :func:`compute_baselines` record. The interval is the
    normal interval of the mean paired difference ``correct_model - correct_baseline``
    per pair (values -1, 0, 1) at ``test["confidence"]``; the model *beats* the baseline
    when that interval lies above 0.
    """
    from .evaluate import mean_interval

    n, best = test["n_examples"], baselines["best"]
    labels = np.asarray(baselines["sets"]["test"]["labels"][:n])
    if len(labels) != n or not np.array_equal(labels, test["labels"]):
        raise ValueError(f"{test['arch']}: the baselines were computed on other test pairs "
                         f"than the model ({n} pairs of {test['views']})")
    model_right = np.asarray(test["predicted"]) == labels
    baseline_right = np.asarray(baselines["sets"]["test"]["predicted"][best][:n]) == labels
    margin, low, high = mean_interval(model_right.astype(float) - baseline_right, test["confidence"])
    return {"best_baseline": best, "best_baseline_accuracy": float(baseline_right.mean()),
            "margin": margin, "margin_ci_low": low, "margin_ci_high": high, "beats_baseline": bool(low > 0)}
