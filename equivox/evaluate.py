"""Held-out test loss and accuracy of a trained run (final and best-validation weights),
with confidence intervals and the per-pair results the paired comparisons read.

Intervals, at confidence level ``c`` (``z`` = the two-sided standard normal quantile):

* accuracy: the Wilson score interval for ``k`` correct of ``n`` pairs, which stays inside
  [0, 1] and keeps its coverage near 0 and 1, unlike the normal (Wald) interval;
* loss: the normal interval of the mean per-pair cross-entropy (nats),
  ``mean +- z * s / sqrt(n)`` with ``s`` the sample standard deviation (``ddof=1``);
  the pairs are independent draws, so the central limit theorem applies at the
  hundreds of pairs a test set holds.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest, norm

from .run_state import load_trained_model, pick_device
from .stats import EXAMPLE_ARRAYS
from .views import FACE_NAMES, ViewSetDataset

CHANCE_ACCURACY = 1 / len(FACE_NAMES)
CHANCE_LOSS = math.log(len(FACE_NAMES))
"""Cross-entropy (nats) of the uniform prediction over the 6 faces."""


def view_loader(views_path: str | Path, n_examples: int | None, batch_size: int):
    """Batches ``(images (B, 2, C, L, L, L), labels (B,))`` of the first ``n_examples``
    pairs of a fixed view set (all when None), in file order."""
    dataset = ViewSetDataset(views_path)
    if n_examples is not None and n_examples < len(dataset):
        dataset = torch.utils.data.Subset(dataset, range(n_examples))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


def z_value(confidence: float) -> float:
    """Two-sided standard normal quantile: 1.96 for 0.95."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(norm.ppf(0.5 + confidence / 2))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` of a binomial proportion ``successes / n``."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    interval = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def mean_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the normal interval of the mean of ``values`` (1D, n >= 2)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        raise ValueError("need at least 2 values for an interval of the mean")
    mean = float(values.mean())
    half = z_value(confidence) * float(values.std(ddof=1)) / math.sqrt(values.size)
    return mean, mean - half, mean + half


@torch.no_grad()
def predict(model: torch.nn.Module, loader, device: torch.device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pair: ``(cross-entropy (n,) nats, predicted face (n,), true face (n,))``."""
    losses, predicted, labels = [], [], []
    for images, target in loader:
        logits = model(images.to(device)).float()
        losses.append(torch.nn.functional.cross_entropy(logits, target.to(device), reduction="none").cpu())
        predicted.append(logits.argmax(1).cpu())
        labels.append(target)
    return tuple(torch.cat(parts).numpy() for parts in (losses, predicted, labels))


def evaluate_weights(weights_path: str | Path, views_path: str | Path, *, n_examples: int | None = None,
                     batch_size: int, confidence: float, device: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """Loss and accuracy of one weights file on a fixed view set, with intervals and the
    confusion matrix: ``(record, loss, correct)``, the last two per pair in file order
    (float32 nats, bool).

    Record keys: ``arch``, ``weights``, ``views``, ``n_examples``, ``confidence``, ``loss``
    (mean nats), ``loss_ci_low``, ``loss_ci_high``, ``correct``, ``accuracy``,
    ``accuracy_ci_low``, ``accuracy_ci_high``, ``chance_accuracy``, ``chance_loss``,
    ``faces``, ``confusion`` (``confusion[i][j]``: pairs of true face ``i`` predicted as
    ``j``), ``predicted`` and ``labels`` (per pair, in file order: paired comparisons
    with the baselines), ``device``, ``compute_s``, ``loss_interval`` and
    ``accuracy_interval`` (the methods, in words).
    """
    device = pick_device(device)
    start = time.perf_counter()
    model, record = load_trained_model(weights_path, device)
    losses, predicted, labels = predict(model, view_loader(views_path, n_examples, batch_size), device)
    hits = predicted == labels
    correct = int(hits.sum())
    loss, loss_low, loss_high = mean_interval(losses, confidence)
    accuracy_low, accuracy_high = wilson_interval(correct, len(labels), confidence)
    confusion = np.zeros((len(FACE_NAMES), len(FACE_NAMES)), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return {
        "arch": record["arch"], "weights": str(weights_path), "views": str(views_path),
        "n_examples": int(len(labels)), "confidence": confidence,
        "loss": loss, "loss_ci_low": loss_low, "loss_ci_high": loss_high,
        "correct": correct, "accuracy": correct / len(labels),
        "accuracy_ci_low": accuracy_low, "accuracy_ci_high": accuracy_high,
        "chance_accuracy": CHANCE_ACCURACY, "chance_loss": CHANCE_LOSS,
        "faces": list(FACE_NAMES), "confusion": confusion.tolist(),
        "predicted": predicted.tolist(), "labels": labels.tolist(),
        "device": str(device), "compute_s": time.perf_counter() - start,
        "loss_interval": "normal interval of the mean per-pair cross-entropy (mean +- z s / sqrt(n))",
        "accuracy_interval": "Wilson score interval",
    }, losses.astype(np.float32), hits.astype(bool)


def evaluate_test(weights_path: str | Path, best_weights_path: str | Path, views_path: str | Path, *,
                  n_examples: int | None = None, batch_size: int, confidence: float,
                  device: str) -> tuple[dict, dict[str, np.ndarray]]:
    """Test results of a run's final weights and of its best-validation weights
    (``final/best_weights.pt``: the weights at the lowest validation loss):
    ``(record, examples)``.

    ``record``: the :func:`evaluate_weights` record of the final weights, plus ``"best"``:
    the same record for the best weights. ``examples``: :data:`equivox.stats.EXAMPLE_ARRAYS` -> array,
    per test pair in file order (what the paired comparisons read, :mod:`equivox.stats`).
    """
    settings = {"n_examples": n_examples, "batch_size": batch_size, "confidence": confidence, "device": device}
    record, loss_final, correct_final = evaluate_weights(weights_path, views_path, **settings)
    best, loss_best, correct_best = evaluate_weights(best_weights_path, views_path, **settings)
    if best["arch"] != record["arch"] or best["labels"] != record["labels"]:
        raise ValueError(f"{best_weights_path} ({best['arch']}) is not the run of {weights_path} "
                         f"({record['arch']}) on the same test pairs")
    record["best"] = best
    return record, dict(zip(EXAMPLE_ARRAYS, (loss_final, correct_final, loss_best, correct_best), strict=True))
