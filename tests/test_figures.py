"""The curve figures: smoothing that cannot lag behind the data, facet panels."""
import numpy as np
import pandas as pd
import pytest

from equivox.config import ConfigError
from equivox.figures import MIN_SMOOTHED_POINTS, curves_figure, smooth
from equivox.tables import Run

BASELINES = {"best": "seam", "sets": {"val": {"rows": [{"baseline": "seam", "accuracy": 0.2}]}}}
SPECS = {"cnn": {"family": "escnn_cnn", "layout": "arch_3"},
         "twin": {"family": "plain_cnn", "layout": "arch_3"},
         "resnet": {"family": "escnn_resnet", "block": "alpha"}}


def make_run(arch: str, accuracies) -> Run:
    steps = np.arange(1, len(accuracies) + 1) * 10
    metrics = pd.DataFrame({"kind": "val", "step": steps, "compute_s": steps * 2.0,
                            "val_accuracy": accuracies, "val_loss": 1.8 - np.asarray(accuracies)})
    return Run(arch, {"arch": arch, "settings": {"spec": SPECS[arch]}}, metrics)


def drawn_curves(fig) -> dict[str, np.ndarray]:
    """y values of the solid or dashed lines of the accuracy panels, by colour."""
    ax = fig.axes[0]
    return [line.get_ydata() for line in ax.get_lines()
            if line.get_linestyle() in ("-", "--") and len(line.get_ydata()) > 2]


def test_three_validation_points_end_at_the_last_measurement():
    """With 3 points (0.2, 0.4, 0.58) the line is the measurements: it ends at 0.58, not
    (as a trailing moving average at weight 0.6 did) near 0.45."""
    fig = curves_figure([make_run("cnn", [0.2, 0.4, 0.58])], "validation", "steps", None, 0.6, BASELINES)
    (line,) = drawn_curves(fig)
    assert line[-1] == 0.58
    np.testing.assert_array_equal(line, [0.2, 0.4, 0.58])


@pytest.mark.parametrize("weight", [0.3, 0.6, 0.8])
def test_a_smoothed_rising_curve_ends_at_its_data(weight):
    """A noisy saturating curve of 30 points: the smoothed line's last value is within
    0.02 of the true curve's, and a straight line is returned unchanged (a trailing
    average would end below it)."""
    t = np.arange(30)
    truth = 0.6 * (1 - np.exp(-t / 8))
    noisy = truth + np.random.default_rng(0).normal(0, 0.02, len(t))
    assert abs(smooth(noisy, weight)[-1] - truth[-1]) < 0.02
    ramp = np.linspace(0.2, 0.58, 12)
    np.testing.assert_allclose(smooth(ramp, weight), ramp, atol=1e-12)
    fig = curves_figure([make_run("cnn", noisy)], "validation", "steps", None, weight, BASELINES)
    (line,) = drawn_curves(fig)
    assert abs(line[-1] - truth[-1]) < 0.02


def local_linear_fit(values, weight):
    """The definition of :func:`smooth`, point by point (quadratic in n)."""
    index, out = np.arange(len(values), dtype=float), np.empty(len(values))
    for t in range(len(values)):
        w = weight ** np.abs(index - t)
        mean_x, mean_y = np.average(index, weights=w), np.average(values, weights=w)
        spread = np.average((index - mean_x) ** 2, weights=w)
        slope = np.average((index - mean_x) * (values - mean_y), weights=w) / spread
        out[t] = mean_y + slope * (t - mean_x)
    return out


@pytest.mark.parametrize("weight", [0.3, 0.6, 0.95])
def test_smoothing_is_the_local_linear_fit_and_a_diverged_point_blanks_only_itself(weight):
    """The convolution form equals the point-by-point fit (kernel cut below 1e-9); a NaN
    (a diverged step) is left out of the fits and stays NaN at its place only."""
    values = np.cumsum(np.random.default_rng(1).normal(size=300))
    np.testing.assert_allclose(smooth(values, weight), local_linear_fit(values, weight), atol=1e-6)
    values[100] = np.nan
    smoothed = smooth(values, weight)
    assert np.isnan(smoothed[100]) and np.isfinite(np.delete(smoothed, 100)).all()
    assert np.isfinite(smooth(np.random.default_rng(2).normal(size=200_000), weight)).all()


def test_short_curves_are_not_smoothed():
    values = np.linspace(0.1, 0.5, MIN_SMOOTHED_POINTS - 1) ** 2
    np.testing.assert_array_equal(smooth(values, 0.6), values)
    np.testing.assert_array_equal(smooth(values, 0.0), values)


def test_facet_panels_name_the_runs_without_the_key():
    runs = [make_run(arch, [0.2, 0.3, 0.4]) for arch in SPECS]
    fig = curves_figure(runs, "validation", "steps", "layout", 0.6, BASELINES)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["layout = arch_3", "no layout (escnn_resnet)"]


def test_a_facet_key_no_run_has_is_an_error_naming_the_allowed_keys():
    runs = [make_run(arch, [0.2, 0.3, 0.4]) for arch in SPECS]
    with pytest.raises(ConfigError, match=r"analysis.figures.facet: 'layuot' .*allowed: block, family, layout"):
        curves_figure(runs, "validation", "steps", "layuot", 0.6, BASELINES)
