"""equivox.stats: replicate intervals and paired comparisons, against hand-computed and scipy values."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from equivox.stats import holm_adjust, paired_comparison, per_example_mean, replicate_summary, sign_flip_test, sign_test


def test_replicate_interval_is_the_student_t_interval_computed_by_hand():
    # mean 2.5, s = sqrt(5/3) = 1.29099, t_{0.975, 3} = 3.182446: half width 2.05426
    summary = replicate_summary([1.0, 2.0, 3.0, 4.0])
    assert summary["n"] == 4 and summary["mean"] == 2.5
    assert summary["ci_low"] == pytest.approx(2.5 - 2.05426, abs=1e-5)
    assert summary["ci_high"] == pytest.approx(2.5 + 2.05426, abs=1e-5)


def test_replicate_interval_matches_scipy_at_another_level():
    values = np.array([0.61, 0.64, 0.58, 0.66, 0.63])
    low, high = scipy_stats.ttest_1samp(values, 0).confidence_interval(0.9)
    summary = replicate_summary(values, confidence=0.9)
    assert (summary["ci_low"], summary["ci_high"]) == pytest.approx((low, high), rel=1e-12)


def test_one_replicate_gives_the_value_and_no_interval():
    summary = replicate_summary([0.7])
    assert summary["n"] == 1 and summary["mean"] == 0.7
    assert math.isnan(summary["ci_low"]) and math.isnan(summary["ci_high"])


def test_no_replicates_is_an_error():
    with pytest.raises(ValueError):
        replicate_summary([])


def test_accuracy_p_value_is_mcnemar_exact_on_the_discordant_pairs():
    # 2 pairs only A gets right, 10 only B gets right, 20 both, 8 neither:
    # p = 2 * (C(12,10) + C(12,11) + C(12,12)) / 2^12 = 158 / 4096
    a = np.array([1] * 2 + [0] * 10 + [1] * 20 + [0] * 8, dtype=bool)
    b = np.array([0] * 2 + [1] * 10 + [1] * 20 + [0] * 8, dtype=bool)
    loss = np.ones(a.size)
    result = paired_comparison(a, loss, b, loss, n_resamples=200)
    assert result["accuracy_p"] == pytest.approx(158 / 4096, rel=1e-12)
    assert (result["b_better"], result["a_better"]) == (10, 2)
    assert result["accuracy_a"] == pytest.approx(22 / 40) and result["accuracy_b"] == pytest.approx(30 / 40)
    assert result["accuracy_diff"] == pytest.approx(8 / 40)  # B minus A
    assert result["direction"] == "B minus A"


def test_identical_models_differ_by_nothing():
    rng = np.random.default_rng(1)
    correct, loss = rng.random(50) < 0.5, rng.random(50)
    result = paired_comparison(correct, loss, correct, loss, n_resamples=500)
    assert result["accuracy_p"] == 1.0 and result["loss_p"] == 1.0
    assert result["accuracy_diff"] == result["loss_diff"] == 0.0
    assert result["accuracy_diff_ci_low"] == result["accuracy_diff_ci_high"] == 0.0


def test_sign_flip_p_value_approaches_the_exact_permutation_p_value():
    d = np.array([0.3, -0.1, 0.5, 0.2, 0.4, -0.05, 0.25])
    flips = np.array(list(itertools.product((-1, 1), repeat=d.size)))
    exact = np.mean(np.abs((flips * d).mean(axis=1)) >= abs(d.mean()) - 1e-12)
    assert 0 < exact < 0.1  # every one of the 2^7 sign vectors
    assert sign_flip_test(d, n_resamples=40000, seed=3) == pytest.approx(exact, abs=0.005)


def test_all_positive_differences_on_five_examples():
    # exact: only the all-plus and all-minus sign vectors are as extreme: 2 / 32
    p = sign_flip_test(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), n_resamples=40000, seed=0)
    assert p == pytest.approx(2 / 32, abs=0.005)
    assert sign_test(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))[0] == pytest.approx(2 / 32)


def test_bootstrap_interval_agrees_with_scipy_and_is_seeded():
    rng = np.random.default_rng(7)
    loss_a = rng.gamma(2.0, 0.5, 400)
    loss_b = loss_a - 0.1 + rng.normal(0, 0.3, 400)
    correct_a, correct_b = rng.random(400) < 0.5, rng.random(400) < 0.6
    result = paired_comparison(correct_a, loss_a, correct_b, loss_b, n_resamples=4000, seed=5)
    reference = scipy_stats.bootstrap(((loss_b - loss_a),), np.mean, n_resamples=4000, method="percentile",
                                      random_state=0).confidence_interval
    assert result["loss_diff_ci_low"] == pytest.approx(reference.low, abs=0.01)
    assert result["loss_diff_ci_high"] == pytest.approx(reference.high, abs=0.01)
    assert result["loss_diff_ci_low"] < result["loss_diff"] < result["loss_diff_ci_high"] < 0
    assert result["loss_p"] < 0.01
    again = paired_comparison(correct_a, loss_a, correct_b, loss_b, n_resamples=4000, seed=5)
    assert again == result
    other = paired_comparison(correct_a, loss_a, correct_b, loss_b, n_resamples=4000, seed=6)
    assert other["loss_diff_ci_low"] != result["loss_diff_ci_low"]


def test_swapping_the_models_negates_the_differences():
    rng = np.random.default_rng(2)
    ca, cb, la, lb = rng.random(60) < 0.4, rng.random(60) < 0.6, rng.random(60), rng.random(60)
    ab = paired_comparison(ca, la, cb, lb, n_resamples=1000, seed=4)
    ba = paired_comparison(cb, lb, ca, la, n_resamples=1000, seed=4)
    assert ba["accuracy_diff"] == pytest.approx(-ab["accuracy_diff"])
    assert ba["loss_diff"] == pytest.approx(-ab["loss_diff"])
    assert ba["accuracy_p"] == pytest.approx(ab["accuracy_p"])
    assert (ba["b_better"], ba["a_better"]) == (ab["a_better"], ab["b_better"])


def test_replicates_are_averaged_per_example_before_pairing():
    # group A: 2 replicates; example 0 right in 1 of 2, example 1 in both, example 2 in none
    a_runs = [np.array([1, 1, 0], bool), np.array([0, 1, 0], bool)]
    np.testing.assert_allclose(per_example_mean(a_runs), [0.5, 1.0, 0.0])
    b_run = np.array([1, 1, 1], bool)
    loss_a = [np.array([1.0, 0.2, 2.0]), np.array([1.4, 0.4, 2.2])]
    result = paired_comparison(a_runs, loss_a, b_run, np.array([0.5, 0.3, 0.9]), n_resamples=100)
    assert result["replicates_a"] == 2 and result["replicates_b"] == 1
    assert result["accuracy_a"] == pytest.approx(0.5)
    assert result["accuracy_diff"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert (result["b_better"], result["a_better"]) == (2, 0)  # examples 0 and 2
    assert result["loss_a"] == pytest.approx(np.mean([1.2, 0.3, 2.1]))
    assert result["loss_diff"] == pytest.approx(np.mean([0.5 - 1.2, 0.3 - 0.3, 0.9 - 2.1]))


def test_different_examples_cannot_be_paired():
    with pytest.raises(ValueError, match="same examples"):
        paired_comparison(np.ones(3), np.ones(3), np.ones(4), np.ones(4), n_resamples=10)
    with pytest.raises(ValueError, match="different numbers"):
        per_example_mean([np.ones(3), np.ones(4)])


def test_holm_adjustment_by_hand():
    """Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; the running
    maximum makes the last 0.06; returned in the given order."""
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.2, 0.7]) == pytest.approx([0.4, 0.7])
    assert holm_adjust([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm_adjust([0.03]) == pytest.approx([0.03])  # one test: nothing to adjust
    adjusted = holm_adjust([0.01, math.nan, 0.02])  # NaN is no test: m = 2
    assert math.isnan(adjusted[1]) and adjusted[[0, 2]] == pytest.approx([0.02, 0.02])
    assert holm_adjust([]).shape == (0,)


def test_holm_keeps_the_family_wise_error_rate_under_the_null():
    """Under the global null (uniform p-values) the chance that any adjusted p is <= 0.05
    is at most 0.05, whereas unadjusted, with 5 tests, it is about 1 - 0.95^5 = 0.23."""
    rng = np.random.default_rng(0)
    p = rng.random((20000, 5))
    any_adjusted = np.mean([(holm_adjust(row) <= 0.05).any() for row in p])
    assert any_adjusted <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 20000)
    assert (p <= 0.05).any(axis=1).mean() == pytest.approx(1 - 0.95 ** 5, abs=0.01)
