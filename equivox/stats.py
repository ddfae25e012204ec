"""Replicates and significance: summaries over replicate runs, paired model comparisons.

Torch-free (numpy and scipy), so that the tables and their tests do not import a model.

* :func:`replicate_summary`: mean of replicate values (e.g. the test accuracies of the
  seeds of one setting) with a two-sided Student t interval,
  ``mean +- t_{(1+c)/2, n-1} * s / sqrt(n)`` (``s``: sample standard deviation,
  ``ddof=1``). With one replicate there is no spread to estimate: the mean is the value
  and the interval is NaN (shown as "–").
* :func:`paired_comparison`: model (or group) B against model A on the *same* test
  pairs, from per-example correctness (0/1) and loss (nats). Differences are **B minus
  A**: a positive accuracy difference and a negative loss difference favour B.

  - A group of several replicates is first reduced to one value per example: each
    example's correctness and loss are averaged over the group's replicates (its
    correctness becomes the share of replicates that got it right). The comparison is
    then paired over examples, so the interval and p-values speak about these test
    pairs (the examples vary, the trained replicates are held fixed); the spread between
    seeds is what :func:`replicate_summary` reports.
  - Interval: paired bootstrap percentile interval: resample examples with
    replacement (the same indices for A and B), ``n_resamples`` times, seeded; the
    interval is the ``(1-c)/2`` and ``(1+c)/2`` quantiles of the resampled mean
    differences.
  - Accuracy p-value: exact two-sided sign test on the per-example differences
    (``scipy.stats.binomtest`` of "B better" among the examples where A and B differ,
    against 1/2). With 0/1 correctness (one run per side) this is McNemar's exact test
    on the discordant pairs.
  - Loss p-value: two-sided sign-flip permutation test of the mean paired loss
    difference: under "no difference" each example's difference is as likely negated,
    so the signs are flipped at random ``n_resamples`` times (seeded) and
    ``p = (1 + #{|mean of flipped| >= |observed mean|}) / (1 + n_resamples)``, which is
    never 0 and is exact up to Monte Carlo error.
* :func:`holm_adjust`: Holm's step-down adjustment of a family of p-values (several
  comparisons at once), which keeps the family-wise error rate at the level without
  assuming the tests are independent.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import binomtest, t as student_t

DIRECTION = "B minus A"
"""What every difference of :func:`paired_comparison` is."""

EXAMPLE_ARRAYS = ("loss_final", "correct_final", "loss_best", "correct_best")
"""The per-example arrays of ``results/analysis/test/<arch>.examples.npz`` (rule
evaluate_test, :func:`equivox.evaluate.evaluate_test`): test pairs in file order; loss:
float32 cross-entropy (nats), correct: bool; ``_final``: the final weights, ``_best``:
the best-validation weights."""


def read_examples(path) -> dict[str, np.ndarray]:
    """The per-example arrays (:data:`EXAMPLE_ARRAYS`) of an ``examples.npz``."""
    with np.load(path) as data:
        return {name: data[name] for name in EXAMPLE_ARRAYS}


CHUNK = 1000
"""Resamples drawn at a time (bounds the memory at CHUNK x examples)."""


def replicate_summary(values, confidence: float = 0.95) -> dict:
    """``{"n", "mean", "ci_low", "ci_high", "sd"}`` of replicate ``values`` (1D, n >= 1;
    NaN values are an error): the mean with its Student t interval at level
    ``confidence`` and the sample standard deviation (NaN bounds and sd when n = 1; zero
    width when all values are equal)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("replicate_summary: no values")
    if not np.isfinite(values).all():
        raise ValueError(f"replicate_summary: non-finite values {values.tolist()}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n, mean = int(values.size), float(values.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "ci_low": math.nan, "ci_high": math.nan, "sd": math.nan}
    sd = float(values.std(ddof=1))
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "ci_low": mean - half, "ci_high": mean + half, "sd": sd}


def per_example_mean(arrays) -> np.ndarray:
    """One value per example from a group's replicates: a 1D array (one run) is returned
    as float; a 2D array or a list of equal-length 1D arrays (replicates x examples) is
    averaged over the replicates."""
    if isinstance(arrays, (list, tuple)):
        lengths = {len(np.ravel(a)) for a in arrays}
        if len(lengths) != 1:
            raise ValueError(f"replicates cover different numbers of examples: {sorted(lengths)}")
        arrays = np.stack([np.ravel(a) for a in arrays])
    arrays = np.asarray(arrays, dtype=np.float64)
    if arrays.ndim == 1:
        return arrays
    if arrays.ndim != 2 or arrays.shape[0] == 0:
        raise ValueError(f"expected examples (1D) or replicates x examples (2D), got shape {arrays.shape}")
    return arrays.mean(axis=0)


def _replicates(arrays) -> int:
    if isinstance(arrays, (list, tuple)):
        return len(arrays)
    return 1 if np.ndim(arrays) == 1 else int(np.shape(arrays)[0])


def paired_bootstrap(differences: dict[str, np.ndarray], *, n_resamples: int, seed: int,
                     confidence: float) -> dict[str, tuple[float, float]]:
    """Percentile intervals ``name -> (low, high)`` of the means of several per-example
    differences, each resample drawing the *same* examples (with replacement) for all;
    ``seed``: an int or a numpy SeedSequence."""
    arrays = {name: np.asarray(d, dtype=np.float64) for name, d in differences.items()}
    n = {a.size for a in arrays.values()}.pop()
    rng = np.random.default_rng(seed)
    means = {name: np.empty(n_resamples) for name in arrays}
    for start in range(0, n_resamples, CHUNK):
        size = min(CHUNK, n_resamples - start)
        index = rng.integers(0, n, size=(size, n))
        for name, a in arrays.items():
            means[name][start:start + size] = a[index].mean(axis=1)
    alpha = (1 - confidence) / 2
    return {name: tuple(float(q) for q in np.quantile(m, [alpha, 1 - alpha])) for name, m in means.items()}


def sign_test(differences: np.ndarray) -> tuple[float, int, int]:
    """``(p, positive, negative)``: exact two-sided sign test of per-example differences
    (zeros dropped): ``binomtest(positive, positive + negative, 1/2)``; p = 1 when every
    difference is 0. On 0/1 correctness differences this is McNemar's exact test."""
    differences = np.asarray(differences, dtype=np.float64)
    positive, negative = int((differences > 0).sum()), int((differences < 0).sum())
    if positive + negative == 0:
        return 1.0, 0, 0
    return float(binomtest(positive, positive + negative, 0.5).pvalue), positive, negative


def sign_flip_test(differences: np.ndarray, *, n_resamples: int, seed: int) -> float:
    """Two-sided sign-flip permutation p-value of the mean of paired ``differences``:
    ``(1 + #{|mean(s * d)| >= |mean(d)|}) / (1 + n_resamples)`` over random signs ``s``."""
    differences = np.asarray(differences, dtype=np.float64)
    observed = abs(differences.mean())
    # ties within rounding count as "as extreme" (an all-zero difference gives p = 1)
    tolerance = 1e-12 * max(1.0, float(np.abs(differences).max(initial=0.0)))
    rng = np.random.default_rng(seed)
    extreme = 0
    for start in range(0, n_resamples, CHUNK):
        size = min(CHUNK, n_resamples - start)
        signs = rng.integers(0, 2, size=(size, differences.size)) * 2 - 1
        extreme += int((np.abs((signs * differences).mean(axis=1)) >= observed - tolerance).sum())
    return (1 + extreme) / (1 + n_resamples)


def holm_adjust(p_values) -> np.ndarray:
    """Holm-adjusted p-values, in the given order: with the ``m`` values sorted
    ascending, ``p_(i)`` becomes ``max_{j <= i} min(1, (m - j + 1) * p_(j))`` (1-based).
    Rejecting every hypothesis whose adjusted p is at most ``alpha`` keeps the chance of
    any false rejection among the ``m`` at most ``alpha`` (Holm 1979). NaN stays NaN
    and does not count in ``m``."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    known = np.flatnonzero(~np.isnan(p))
    m = known.size
    order = known[np.argsort(p[known], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def paired_comparison(correct_a, loss_a, correct_b, loss_b, *, n_resamples: int = 10000, seed: int = 0,
                      confidence: float = 0.95) -> dict:
    """B against A on the same examples (module docstring). Each argument is one run's
    per-example array (1D) or a group's replicates (2D, or a list of 1D arrays), all
    over the same examples in the same order.

    Returns: ``direction`` ("B minus A"), ``n_examples``, ``replicates_a``,
    ``replicates_b``, ``accuracy_a``, ``accuracy_b``, ``accuracy_diff`` with
    ``accuracy_diff_ci_low/high`` (paired bootstrap) and ``accuracy_p`` (exact sign test
    / McNemar), ``b_better`` and ``a_better`` (examples where B resp. A is right more
    often: for single runs, the discordant pairs), ``loss_a``, ``loss_b``,
    ``loss_diff`` with ``loss_diff_ci_low/high`` and ``loss_p`` (sign-flip permutation),
    ``confidence``, ``n_resamples``, ``seed``, ``accuracy_test`` and ``loss_test``
    (the methods, in words)."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    means = {"correct_a": per_example_mean(correct_a), "loss_a": per_example_mean(loss_a),
             "correct_b": per_example_mean(correct_b), "loss_b": per_example_mean(loss_b)}
    lengths = {name: a.size for name, a in means.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"paired comparison needs the same examples on both sides, got lengths {lengths}")
    n = lengths["correct_a"]
    if n == 0:
        raise ValueError("paired comparison: no examples")
    for name, a in means.items():
        if not np.isfinite(a).all():
            raise ValueError(f"paired comparison: non-finite {name}")
    accuracy_d = means["correct_b"] - means["correct_a"]
    loss_d = means["loss_b"] - means["loss_a"]
    # one seed, two streams: the bootstrap and the permutation draws are independent
    boot_seed, flip_seed = np.random.SeedSequence(seed).spawn(2)
    intervals = paired_bootstrap({"accuracy": accuracy_d, "loss": loss_d}, n_resamples=n_resamples,
                                 seed=boot_seed, confidence=confidence)
    accuracy_p, b_better, a_better = sign_test(accuracy_d)
    return {
        "direction": DIRECTION, "n_examples": int(n),
        "replicates_a": _replicates(correct_a), "replicates_b": _replicates(correct_b),
        "accuracy_a": float(means["correct_a"].mean()), "accuracy_b": float(means["correct_b"].mean()),
        "accuracy_diff": float(accuracy_d.mean()),
        "accuracy_diff_ci_low": intervals["accuracy"][0], "accuracy_diff_ci_high": intervals["accuracy"][1],
        "accuracy_p": accuracy_p, "b_better": b_better, "a_better": a_better,
        "loss_a": float(means["loss_a"].mean()), "loss_b": float(means["loss_b"].mean()),
        "loss_diff": float(loss_d.mean()),
        "loss_diff_ci_low": intervals["loss"][0], "loss_diff_ci_high": intervals["loss"][1],
        "loss_p": sign_flip_test(loss_d, n_resamples=n_resamples, seed=flip_seed),
        "confidence": confidence, "n_resamples": int(n_resamples), "seed": int(seed),
        "accuracy_test": "exact two-sided sign test on per-example differences (McNemar exact for 0/1)",
        "loss_test": "two-sided sign-flip permutation test of the mean paired difference",
    }
