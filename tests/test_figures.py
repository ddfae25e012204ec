"""The curve figures: smoothing that cannot lag behind the data, facet panels."""
import numpy as np
import pandas as pd
import pytest

from equivox.config import ConfigError
from equivox.figures import MIN_SMOOTHED_POINTS, curves_figure, replicate_curves, smooth
from equivox.tables import Run

BASELINES = {"best": "seam", "sets": {"val": {"rows": [{"baseline": "seam", "accuracy": 0.2}]}}}
SPECS = {"cnn": {"family": "escnn_cnn", "layout": "arch_3"},
         "twin": {"family": "plain_cnn", "layout": "arch_3"},
         "resnet": {"family": "escnn_resnet", "block": "alpha"}}


def make_run(arch: str, accuracies, spec: str | None = None, seconds_per_step: float = 2.0) -> Run:
    steps = np.arange(1, len(accuracies) + 1) * 10
    metrics = pd.DataFrame({"kind": "val", "step": steps, "compute_s": steps * 2.0,
                            "model_s": steps * seconds_per_step,
                            "val_accuracy": accuracies, "val_loss": 1.8 - np.asarray(accuracies)})
    return Run(arch, {"arch": arch, "settings": {"spec": SPECS[spec or arch]}}, metrics)


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


def legend_labels(fig) -> list[str]:
    return [text.get_text() for text in fig.legends[0].get_texts()]


def band_limits(ax) -> list[tuple[float, float]]:
    """(lowest, highest) y of each shaded band of a panel."""
    return [(path.vertices[:, 1].min(), path.vertices[:, 1].max())
            for band in ax.collections if band.get_paths() for path in band.get_paths()[:1]]


REPLICATES = {"cnn_s0": [0.20, 0.30, 0.40], "cnn_s1": [0.24, 0.36, 0.46], "cnn_s2": [0.22, 0.30, 0.43]}
GROUPS = {"cnn_s0": "cnn", "cnn_s1": "cnn", "cnn_s2": "cnn", "twin": "twin"}


def replicate_runs():
    return [make_run(arch, values, spec="cnn") for arch, values in REPLICATES.items()] + [
        make_run("twin", [0.2, 0.25, 0.3])]


def test_a_replicate_group_is_its_mean_and_a_min_max_band_a_single_run_as_before():
    fig = curves_figure(replicate_runs(), "validation", "steps", None, 0.6, BASELINES, run_groups=GROUPS)
    mean, twin = drawn_curves(fig)
    np.testing.assert_allclose(mean, np.mean(list(REPLICATES.values()), axis=0))  # 3 points: not smoothed
    np.testing.assert_array_equal(twin, [0.2, 0.25, 0.3])
    ((low, high),) = band_limits(fig.axes[0])  # one band: the group's, none for the single run
    assert (low, high) == pytest.approx((0.20, 0.46))
    labels = legend_labels(fig)
    assert "cnn (3 runs, min–max)" in labels and "twin" in labels
    assert not any(label.startswith("cnn_s") for label in labels)


def test_without_groups_every_run_is_its_own_line():
    fig = curves_figure(replicate_runs(), "validation", "steps", None, 0.6, BASELINES)
    assert len(drawn_curves(fig)) == 4 and band_limits(fig.axes[0]) == []
    assert {"cnn_s0", "cnn_s1", "cnn_s2", "twin"} <= set(legend_labels(fig))


def test_replicates_are_read_on_a_common_grid_up_to_the_shortest_run():
    # run 1 measured at 0, 2, 4, 6; run 2 at 0, 3, 6, 9: grid 0, 2, 3, 4, 6 (both reach 6)
    curves = [(np.array([0.0, 2, 4, 6]), np.array([0.0, 0.2, 0.4, 0.6])),
              (np.array([0.0, 3, 6, 9]), np.array([0.0, 0.6, 1.2, 1.8]))]
    grid, points, line, low, high = replicate_curves(curves, 0.6)
    np.testing.assert_array_equal(grid, [0, 2, 3, 4, 6])
    np.testing.assert_allclose(points, [0.0, 0.3, 0.45, 0.6, 0.9])  # (0.1 x + 0.2 x) / 2
    np.testing.assert_allclose(line, points)  # few points: as measured
    np.testing.assert_allclose(low, 0.1 * grid)
    np.testing.assert_allclose(high, 0.2 * grid)


def test_replicates_against_compute_are_averaged_over_their_common_time():
    runs = [make_run("cnn_s0", [0.2, 0.3, 0.4], spec="cnn", seconds_per_step=2.0),
            make_run("cnn_s1", [0.2, 0.3, 0.4], spec="cnn", seconds_per_step=4.0)]
    fig = curves_figure(runs, "validation", "compute", None, 0.6, BASELINES,
                        run_groups={"cnn_s0": "cnn", "cnn_s1": "cnn"})
    (line,) = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "-"]
    # s0 measured at 20, 40, 60 s; s1 at 40, 80, 120 s: both cover 40-60 s (axis in minutes)
    np.testing.assert_allclose(line.get_xdata() * 60, [40, 60])
    np.testing.assert_allclose(line.get_ydata(), [(0.3 + 0.2) / 2, (0.4 + 0.25) / 2])
