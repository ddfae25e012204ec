"""The paper figures, in one style: validation and training curves, test results, dead units.

Conventions shared by every figure: one colour per model (in the order the models are
configured, so a model has the same colour everywhere), solid lines for equivariant
(``escnn_*``) families and dashed lines for their plain twins, a dotted grey chance
line (accuracy 1/6, cross-entropy ln 6 nats) and, on every accuracy axis, a dash-dotted
line at the best structure-blind baseline (:mod:`equivox.baselines`; its validation
accuracy on curves, its test accuracy on test results), losses in nats. Curves are drawn as the
raw points under a smoothed line (:func:`smooth`, weight ``analysis.figures.smoothing``)
that cannot lag behind the data at the end; a curve of fewer than
:data:`MIN_SMOOTHED_POINTS` points is drawn unsmoothed, its points emphasised. Every
figure is saved as SVG and PDF (:func:`save`). On the curve figures a group of replicate
runs (seeds of one setting) is one colour and one curve: the mean of its runs with a
min-max band (:func:`replicate_curves`). The figures show the final weights' test results.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .dead_units import HIST_EDGES, hist_columns  # noqa: E402
from .evaluate import CHANCE_ACCURACY, CHANCE_LOSS  # noqa: E402
from .tables import Run, best_baseline, spec_value  # noqa: E402

STYLE = {
    "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5,
    "lines.linewidth": 1.5, "figure.dpi": 100, "savefig.bbox": "tight",
    "svg.fonttype": "none", "pdf.fonttype": 42,
}
CHANCE_STYLE = {"color": "0.4", "linestyle": ":", "linewidth": 1.0}
BASELINE_STYLE = {"color": "tab:red", "linestyle": "-.", "linewidth": 1.0, "alpha": 0.8}

CURVES = {"validation": ("val", (("val_accuracy", "validation accuracy"),
                                 ("val_loss", "validation loss (nats)"))),
          "training": ("train", (("train_accuracy", "training accuracy (per logging window)"),
                                 ("train_loss", "training loss (nats)")))}
"""Curve figures: name -> (metrics.csv row kind, ((column, axis label) of accuracy, of loss))."""
X_AXES = ("steps", "compute")
"""Curve x axes: steps, or the model's own training time (metrics.csv ``model_s``: compute
less data waits, what the compute budget counts; in hours, minutes or seconds, whichever
suits the longest run)."""
TIME_UNITS = ((3600.0, "hours"), (60.0, "minutes"), (1.0, "seconds"))


def apply_style() -> None:
    matplotlib.rcParams.update(STYLE)


def model_colours(models: list[str]) -> dict[str, tuple]:
    """A distinct colour per model, by position in ``models`` (tab10, or tab20 + tab20b)."""
    palette = (list(plt.get_cmap("tab10").colors) if len(models) <= 10
               else list(plt.get_cmap("tab20").colors) + list(plt.get_cmap("tab20b").colors))
    return {model: palette[i % len(palette)] for i, model in enumerate(models)}


def line_style(family: str) -> str:
    """Solid for equivariant families, dashed for plain twins."""
    return "-" if family.startswith("escnn_") else "--"


MIN_SMOOTHED_POINTS = 8
"""Curves with fewer points are drawn as measured (no smoothing), points emphasised."""


SMOOTHING_CUTOFF = 1e-9
"""Kernel weights below this fraction of the centre's are dropped (cost linear in n)."""


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """A sequence smoothed without lag (weight 0 = no smoothing): at each point ``t``, a
    straight line fitted by least squares to the points around it, point ``i`` weighted
    ``weight^|i - t|`` (dropped below :data:`SMOOTHING_CUTOFF`), read at ``t`` (two-sided
    exponential kernel, local linear fit).

    Unlike a trailing moving average, whose last value trails a rising curve by about
    ``1 / (1 - weight)`` points, the kernel is symmetric inside the curve and the linear
    fit follows the trend at both ends: a straight line is returned unchanged, and
    the last value stays near the last points. Non-finite values (a diverged step) are
    left out of every fit and stay non-finite where they are. Fewer than
    :data:`MIN_SMOOTHED_POINTS` values are returned unchanged. The weighted sums are
    FFT convolutions, so a curve of 10^6 points takes about a second."""
    from scipy.signal import fftconvolve

    values = np.asarray(values, dtype=float)
    n = len(values)
    if weight == 0 or n < MIN_SMOOTHED_POINTS:
        return values.copy()
    reach = min(n - 1, int(np.ceil(np.log(SMOOTHING_CUTOFF) / np.log(weight))))
    d = np.arange(-reach, reach + 1, dtype=float)  # offset i - t
    kernel = weight ** np.abs(d)
    finite = np.isfinite(values)
    y = np.where(finite, values, 0.0)
    m = finite.astype(float)

    def around(a, k):  # sum over i of a[i] * k[i - t], for every t
        return fftconvolve(a, k[::-1], mode="same")

    s0 = around(m, kernel)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_d = around(m, d * kernel) / s0
        mean_y = around(y, kernel) / s0
        spread = around(m, d * d * kernel) / s0 - mean_d ** 2
        covariance = around(y, d * kernel) / s0 - mean_d * mean_y
        slope = np.where(spread > 1e-12, covariance / spread, 0.0)
        out = mean_y - slope * mean_d
    out[~finite | (s0 < 0.5)] = np.nan
    return out


def save(fig, svg_path, pdf_path) -> None:
    """Write the figure as SVG and PDF and close it."""
    for path in (svg_path, pdf_path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    plt.close(fig)


def _legend_below(fig, handles_by_label: dict) -> None:
    fig.legend(handles_by_label.values(), handles_by_label.keys(), loc="upper center",
               bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(handles_by_label)), frameon=False)


def facet_groups(runs: list[Run], facet: str | None) -> dict[str, list[Run]]:
    """Runs grouped by their spec value of ``facet``, keyed by panel title (values sorted;
    the runs whose spec lacks the key last, titled by their families). Raises
    ConfigError when no run has the key."""
    from .schema import ConfigError, facet_problems

    if facet is None:
        return {"": list(runs)}
    problems = facet_problems({run.arch: run.spec for run in runs}, facet)
    if problems:
        raise ConfigError(problems[0])
    values = sorted({spec_value(run, facet) for run in runs},
                    key=lambda v: (v == "n/a", float(v) if _is_number(v) else math.inf, v))
    groups = {}
    for value in values:
        group = [run for run in runs if spec_value(run, facet) == value]
        families = ", ".join(dict.fromkeys(run.spec["family"] for run in group))
        groups[f"{facet} = {value}" if value != "n/a" else f"no {facet} ({families})"] = group
    return groups


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def replicate_curves(curves: list[tuple[np.ndarray, np.ndarray]], smoothing: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The curves ``(x, y)`` of a group's replicate runs on one grid: ``(x, mean of the
    measurements, mean line, band low, band high)``.

    The grid is every x any replicate measured inside the range all of them cover (the
    shortest run ends the curve); each replicate is read there by linear interpolation
    (exact where it measured: runs of one setting validate at the same steps). Each
    replicate is smoothed (:func:`smooth`) before interpolating; the line is the mean of
    the smoothed replicates, and the band their minimum to maximum (the whole spread of
    the seeds, no distributional assumption at a handful of runs)."""
    start = max(float(np.nanmin(xs)) for xs, _ in curves)
    stop = min(float(np.nanmax(xs)) for xs, _ in curves)
    grid = np.unique(np.concatenate([xs[(xs >= start) & (xs <= stop)] for xs, _ in curves]))
    raw = np.stack([np.interp(grid, xs, ys) for xs, ys in curves])
    smoothed = np.stack([np.interp(grid, xs, smooth(ys, smoothing)) for xs, ys in curves])
    return grid, raw.mean(axis=0), smoothed.mean(axis=0), smoothed.min(axis=0), smoothed.max(axis=0)


BAND_ALPHA = 0.2
"""Opacity of a replicate group's min-max band."""


def curves_figure(runs: list[Run], curve: str, x: str, facet: str | None, smoothing: float,
                  baselines: dict, run_groups: dict[str, str] | None = None):
    """Accuracy (top row) and loss (bottom row) of every run against ``x``, one column
    per value of the ``facet`` spec key; the best baseline's validation accuracy drawn
    across every accuracy panel.

    A group of several replicate runs (``run_groups``: run -> group; None or a run not in
    it: its own group) is drawn as one curve, coloured and labelled by the group: the
    mean of its runs with a band from their minimum to their maximum
    (:func:`replicate_curves`; legend "<group> (n runs, min-max)"); a group of one run
    is drawn as that run, as without groups.

    Args:
        runs: in configured model order (fixes the colours).
        curve: a key of ``CURVES``: "validation" (the val rows of metrics.csv) or
            "training" (its logging windows).
        x: one of ``X_AXES``: "steps" or "compute".
        facet: spec key to facet by (None: one column).
        smoothing: EMA weight in [0, 1).
        baselines: a compute_baselines record (analysis/baselines/val.json or test.json).
        run_groups: run name -> replicate group (``run_groups()`` of the workflow).
    """
    from .tables import group_order

    apply_style()
    if x not in X_AXES:
        raise ValueError(f"x must be one of {X_AXES}, not {x!r}")
    kind, metrics = CURVES[curve]
    x_scale, x_label = 1.0, "steps"
    if x == "compute":
        longest_s = max(run.metrics["model_s"].max() for run in runs)
        x_scale, unit = next((s, u) for s, u in TIME_UNITS if longest_s >= s or s == 1.0)
        x_label = f"model time, data waits excluded ({unit})"
    groups = facet_groups(runs, facet)
    baseline_name, baseline_accuracy = best_baseline(baselines, "val")
    by_arch = {run.arch: run for run in runs}
    replicates = group_order(list(by_arch), run_groups)
    group_of = {arch: group for group, members in replicates.items() for arch in members}
    colours = model_colours(list(replicates))
    fig, axes = plt.subplots(2, len(groups), figsize=(3.2 * len(groups) + 0.6, 5.0),
                             sharex="col", sharey="row", squeeze=False)
    handles = {}
    for col, (title, panel) in enumerate(groups.items()):
        panel_groups = group_order([run.arch for run in panel], group_of)
        for row, (metric, label) in enumerate(metrics):
            ax = axes[row, col]
            for group, members in panel_groups.items():
                curves = []
                for arch in members:
                    data = by_arch[arch].rows(kind)
                    curves.append((data["step" if x == "steps" else "model_s"].to_numpy(float) / x_scale,
                                   data[metric].to_numpy(float)))
                colour, style = colours[group], line_style(by_arch[members[0]].spec["family"])
                if len(curves) == 1:
                    xs, ys = curves[0]
                    line_ys, band = smooth(ys, smoothing), None
                    label_text = members[0]
                else:
                    xs, ys, line_ys, low, high = replicate_curves(curves, smoothing)
                    band = (low, high)
                    label_text = f"{group} ({len(members)} runs, min–max)"
                few = len(ys) < MIN_SMOOTHED_POINTS  # drawn as measured: points stand out
                ax.plot(xs, ys, "o", color=colour, alpha=0.9 if few else 0.35,
                        markersize=5 if few else 3.5, markeredgewidth=0)
                if band is not None:
                    ax.fill_between(xs, *band, color=colour, alpha=BAND_ALPHA, linewidth=0)
                (line,) = ax.plot(xs, line_ys, color=colour, linestyle=style)
                handles[label_text] = line
            ax.axhline(CHANCE_ACCURACY if row == 0 else CHANCE_LOSS, **CHANCE_STYLE)
            if row == 0:
                ax.axhline(baseline_accuracy, **BASELINE_STYLE)
            if col == 0:
                ax.set_ylabel(label)
            if row == 1:
                ax.set_xlabel(x_label)
        axes[0, col].set_title(title)
    for ax in axes.flat:
        ax.set_xlim(left=0)
    families = {run.spec["family"].startswith("escnn_") for run in runs}
    handles["chance (1/6; ln 6)"] = Line2D([], [], **CHANCE_STYLE)
    handles[f"best baseline ({baseline_name}, val)"] = Line2D([], [], **BASELINE_STYLE)
    if families == {True, False}:
        handles["equivariant (escnn)"] = Line2D([], [], color="0.2", linestyle="-")
        handles["plain twin"] = Line2D([], [], color="0.2", linestyle="--")
    _legend_below(fig, handles)
    fig.tight_layout()
    return fig


def test_results_figure(tests: list[dict], families: dict[str, str], models: list[str],
                        baselines: dict):
    """Test accuracy and loss per model with their intervals (``tests``: evaluate_test
    records; ``families``: model -> family; ``models``: configured order, for colours),
    beside chance and the best baseline's test accuracy (``baselines``: the
    compute_baselines record). A model whose paired margin over that baseline is not
    above 0 (:func:`equivox.baselines.margin_over_best`) is labelled "not above baseline".
    Models are listed best test accuracy first."""
    from .baselines import margin_over_best

    apply_style()
    colours = model_colours(models)
    tests = sorted(tests, key=lambda t: t["accuracy"])
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(7.0, 0.35 * len(tests) + 1.4), sharey=True)
    ys = np.arange(len(tests))
    for y, test in zip(ys, tests):
        colour = colours[test["arch"]]
        marker = "o" if families[test["arch"]].startswith("escnn_") else "s"
        for ax, key in ((acc_ax, "accuracy"), (loss_ax, "loss")):
            low, high = test[f"{key}_ci_low"], test[f"{key}_ci_high"]
            ax.errorbar(test[key], y, xerr=[[test[key] - low], [high - test[key]]], fmt=marker,
                        color=colour, capsize=3, markersize=5)
    acc_ax.axvline(CHANCE_ACCURACY, **CHANCE_STYLE)
    loss_ax.axvline(CHANCE_LOSS, **CHANCE_STYLE)
    baseline_name, baseline_accuracy = best_baseline(baselines, "test")
    acc_ax.axvline(baseline_accuracy, **BASELINE_STYLE)
    acc_ax.text(baseline_accuracy, 1.0, f" {baseline_name}", transform=acc_ax.get_xaxis_transform(),
                va="bottom", ha="left", fontsize=8, color=BASELINE_STYLE["color"])
    acc_ax.set_yticks(ys, [test["arch"] + ("" if margin_over_best(test, baselines)["beats_baseline"]
                                           else "\n(not above baseline)") for test in tests])
    level = f"{tests[0]['confidence']:.0%}" if tests else ""
    acc_ax.set_xlabel(f"test accuracy ({level} Wilson interval)")
    loss_ax.set_xlabel(f"test loss, nats ({level} normal interval)")
    acc_ax.text(CHANCE_ACCURACY, 1.0, " chance", transform=acc_ax.get_xaxis_transform(),
                va="bottom", ha="left", fontsize=8, color="0.4")
    loss_ax.text(CHANCE_LOSS, 1.0, "chance ", transform=loss_ax.get_xaxis_transform(),
                 va="bottom", ha="right", fontsize=8, color="0.4")
    fig.tight_layout()
    return fig


def _unit_label(row) -> str:
    """``units x channels per unit`` of one layer_table row (``units`` when a unit is one
    channel, ``units (channels ch)`` when the layer's units differ in size)."""
    if row["channels"] == row["units"]:
        return str(row["units"])
    per_unit, rest = divmod(row["channels"], row["units"])
    return f"{row['units']}×{per_unit}" if rest == 0 else f"{row['units']} ({row['channels']} ch)"


def dead_units_figure(table: pd.DataFrame, model: str, tau: float):
    """One model's hooked layers in forward order: share of units dead and dormant (top
    bars; black ticks: the same shares in physical channels), and how the units' fraction
    active is distributed (bottom, share of the layer's units per bin).
    ``table``: :func:`equivox.dead_units.layer_table`."""
    apply_style()
    n = len(table)
    xs = np.arange(n)
    fig, (bar_ax, map_ax) = plt.subplots(2, 1, figsize=(max(6.0, 0.32 * n + 2.5), 5.6), sharex=True,
                                         gridspec_kw={"height_ratios": [1, 1.3]})
    width = 0.4
    for offset, column, colour, label in ((-width / 2, "dead", "#b2182b", "dead (never active)"),
                                          (width / 2, "dormant", "#ef8a62", f"dormant (score ≤ {tau:g})")):
        bar_ax.bar(xs + offset, table[column] / table["units"], width, color=colour, label=label)
        bar_ax.scatter(xs + offset, table[f"{column}_channels"] / table["channels"], marker="_", s=60,
                       color="black", linewidths=1.2, zorder=3,
                       label="same, share of physical channels" if column == "dead" else None)
    for x, (_, row) in zip(xs, table.iterrows()):
        bar_ax.text(x, 1.02, _unit_label(row), ha="center", va="bottom", fontsize=6, color="0.3",
                    rotation=90 if n > 12 else 0)
    bar_ax.set_ylim(0, 1.25)
    bar_ax.set_ylabel("share of units")
    bar_ax.set_title(f"{model} (numbers: units per layer × physical channels per unit)")
    bar_ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    shares = (table[hist_columns()].to_numpy(float) / table["units"].to_numpy(float)[:, None]).T
    image = map_ax.imshow(shares, aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=1,
                          extent=(-0.5, n - 0.5, HIST_EDGES[0], HIST_EDGES[-1]), interpolation="nearest")
    map_ax.set_ylabel("fraction of samples active")
    map_ax.grid(False)
    colourbar = fig.colorbar(image, ax=map_ax, pad=0.02, fraction=0.04)
    colourbar.set_label("share of units")
    labels = [f"{name} ({function})" for name, function in zip(table["layer_name"], table["function"])]
    map_ax.set_xticks(xs, labels, rotation=60, ha="right", fontsize=7)
    map_ax.set_xlabel("nonlinearity (where it sits; its function), forward order")
    fig.tight_layout()
    return fig


def dead_units_summary_figure(tables: dict[str, pd.DataFrame], families: dict[str, str], tau: float):
    """Share of units dead (left) and dormant (middle, score <= ``tau``) per hooked layer
    against its relative depth (0 = the first nonlinearity, 1 = the last, the head's;
    models of different depth share the axis), one line per model; right: each whole
    model's shares counted in units (circles) and in physical channels (squares),
    filled dead, open dormant. ``tables``: model -> layer_table, in configured order."""
    apply_style()
    colours = model_colours(list(tables))
    fig, axes = plt.subplots(1, 3, figsize=(11.0, max(3.4, 0.22 * len(tables) + 1.6)),
                             gridspec_kw={"width_ratios": [1, 1, 0.8]})
    for model, table in tables.items():
        for ax, column in zip(axes[:2], ("dead", "dormant")):
            ax.plot(table["relative_depth"], table[column] / table["units"], marker="o", markersize=3,
                    color=colours[model], linestyle=line_style(families[model]), label=model)
    axes[0].set_ylabel("share of the layer's units")
    axes[0].set_title("dead (never active)")
    axes[1].set_title(f"dormant (dormancy score ≤ {tau:g})")
    for ax in axes[:2]:
        ax.set_xlabel("relative depth (first nonlinearity 0, head last 1)")
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
    axes[1].sharey(axes[0])
    total_ax = axes[2]
    models = list(tables)
    ys = np.arange(len(models))[::-1]
    for y, model in zip(ys, models):
        totals = tables[model][["dead", "dormant", "units", "dead_channels", "dormant_channels",
                                "channels"]].sum()
        for column, filled in (("dead", True), ("dormant", False)):
            for share, marker in ((totals[column] / totals["units"], "o"),
                                  (totals[f"{column}_channels"] / totals["channels"], "s")):
                total_ax.scatter(share, y, marker=marker, s=22, color=colours[model] if filled else "none",
                                 edgecolors=colours[model], linewidths=1.0)
    total_ax.set_yticks(ys, models, fontsize=7)
    total_ax.set_ylim(-0.7, len(models) - 0.3)
    total_ax.set_xlim(-0.03, 1.03)
    total_ax.set_xlabel("share of the whole model")
    total_ax.set_title("whole model")
    key = [Line2D([], [], marker="o", linestyle="", color="0.3", label="dead, in units"),
           Line2D([], [], marker="s", linestyle="", color="0.3", label="dead, in channels"),
           Line2D([], [], marker="o", linestyle="", markerfacecolor="none", color="0.3",
                  label="dormant, in units"),
           Line2D([], [], marker="s", linestyle="", markerfacecolor="none", color="0.3",
                  label="dormant, in channels")]
    total_ax.legend(handles=key, loc="upper left", bbox_to_anchor=(0.0, -0.18), frameon=False, fontsize=7)
    handles, labels = axes[0].get_legend_handles_labels()
    _legend_below(fig, dict(zip(labels, handles)))
    fig.tight_layout()
    return fig


# --- equivariance, measured (equivox.equivariance) ---------------------------------------

SPREAD_STYLE = {"color": "0.4", "linestyle": ":", "linewidth": 1.0}
"""Reference line at 1 = the between-example spread of the features."""


def equivariance_figure(summaries: list[dict], families: dict[str, str], models: list[str]):
    """Feature error against the rotation angle of the atoms (re-voxelized about the view
    centre, random axes), relative to the between-example spread: invariant features
    (left) and all features after applying the representation (right; plain models: the
    plain change). One line per model (``summaries``: measure_equivariance records;
    ``families``: model -> family; ``models``: configured order, for colours), mean with
    its interval over examples; the markers at 0 degrees are the identity floor."""
    apply_style()
    colours = model_colours(models)
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.4), sharey=True)
    handles = {}
    for summary in summaries:
        model = summary["arch"]
        style = {"color": colours[model], "linestyle": line_style(families[model])}
        for ax, metric in zip(axes, ("invariant_spread", "equivariant_spread")):
            angles = [0.0] + [row["angle_deg"] for row in summary["by_angle"]]
            points = [summary["kinds"]["identity"][metric]] if "identity" in summary["kinds"] else [None]
            points += [row[metric] for row in summary["by_angle"]]
            keep = [(a, p) for a, p in zip(angles, points) if p is not None]
            xs = np.array([a for a, _ in keep])
            mean = np.array([p["mean"] for _, p in keep])
            low = np.array([p["ci_low"] for _, p in keep])
            high = np.array([p["ci_high"] for _, p in keep])
            line, = ax.plot(xs, mean, marker="o", markersize=3, label=model, **style)
            ax.fill_between(xs, low, high, color=colours[model], alpha=0.12, linewidth=0)
            handles[model] = line
    for ax in axes:
        ax.axhline(1.0, **SPREAD_STYLE)
        ax.set_xlabel("rotation angle of the atoms (degrees; random axes)")
        ax.set_xlim(0, 180)
        ax.set_xticks([0, 45, 90, 135, 180])
        ax.set_ylim(bottom=0)
    axes[0].set_ylabel("feature change / between-example spread")
    axes[0].set_title("invariant features  ‖P f(R x) − P f(x)‖")
    axes[1].set_title("all features  ‖f(R x) − ρ(R) f(x)‖")
    handles["between-example spread"] = Line2D([], [], **SPREAD_STYLE)
    if {family.startswith("escnn_") for family in families.values()} == {True, False}:
        handles["equivariant (escnn)"] = Line2D([], [], color="0.2", linestyle="-")
        handles["plain twin (ρ = P = identity)"] = Line2D([], [], color="0.2", linestyle="--")
    _legend_below(fig, handles)
    fig.tight_layout()
    return fig
