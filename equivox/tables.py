"""Paper tables from the run and analysis records: results, baselines, speed and memory,
dead units, replicates (per group of replicate runs) and comparisons (paired, per pair of groups).

Inputs are what the earlier stages write: ``results/runs/<arch>/final/{run.json,metrics.csv}``
(:mod:`equivox.train`), ``results/analysis/test/<arch>.{json,examples.npz}``
(:mod:`equivox.evaluate`) and ``results/analysis/dead_units/<arch>.tsv`` (:mod:`equivox.dead_units`). Each table is
written as CSV (numbers at full precision, one column per quantity), and as Markdown,
LaTeX (booktabs) and HTML with rounded numbers and intervals as ``value [low, high]``.

Definitions:

* final and best weights: a run's weights at its last step (``final/weights.pt``) and
  at its lowest validation loss (``final/best_weights.pt``); the test columns without a
  prefix, the margin over the baselines and the figures are the final weights';
* final validation: the last ``kind=val`` row of metrics.csv (every run validates at
  its last step);
* speed: medians over the ``kind=train`` logging windows after the first (the first
  window holds warm-up: worker start, allocator growth, escnn caches);
* epoch time: examples per epoch / median examples per second, i.e. training only,
  without validation;
* peak memory: the maximum over all rows (GPU: ``torch.cuda.max_memory_*``; host: RSS
  of the trainer and its loader workers), in GiB.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

GIB = 2 ** 30


def best_baseline(baselines: dict, split: str) -> tuple[str, float]:
    """(name, accuracy on ``split``) of the best baseline of a baselines record
    (``results/analysis/baselines/<split>.json``; the best is chosen on val)."""
    row = next(r for r in baselines["sets"][split]["rows"] if r["baseline"] == baselines["best"])
    return baselines["best"], row["accuracy"]


@dataclass
class Run:
    """One finished training run: its summary (final/run.json) and metrics (final/metrics.csv)."""

    arch: str
    summary: dict
    metrics: pd.DataFrame

    @property
    def spec(self) -> dict:
        return self.summary["settings"]["spec"]

    def rows(self, kind: str) -> pd.DataFrame:
        """The metrics rows of one kind ("train" or "val"), in step order."""
        return self.metrics[self.metrics["kind"] == kind].sort_values("step", kind="stable")


def read_run(run_json: str | Path) -> Run:
    """Read a run from its ``final/run.json`` (metrics.csv beside it)."""
    run_json = Path(run_json)
    summary = json.loads(run_json.read_text())
    metrics = pd.read_csv(run_json.with_name("metrics.csv"))
    return Run(summary["arch"], summary, metrics)


def spec_value(run: Run, key: str | None) -> str:
    """The run's architecture spec value for ``key`` as text ("n/a" when absent; "all" for no key)."""
    if key is None:
        return "all"
    value = run.spec.get(key)
    return "n/a" if value is None else str(value)


# --- tables (numbers) ----------------------------------------------------------------

def results_table(runs: list[Run], tests: list[dict], baselines: dict) -> pd.DataFrame:
    """One row per run, sorted by final validation loss (ascending).

    Columns: model, family, parameters, val_loss, val_accuracy, test_loss (mean
    cross-entropy, nats) with test_loss_ci_low/high, test_accuracy with
    test_accuracy_ci_low/high, test_pairs, the margin over the best structure-blind
    baseline on the same test pairs (:func:`equivox.baselines.margin_over_best`:
    best_baseline, best_baseline_accuracy, margin, margin_ci_low/high, beats_baseline),
    the same test columns for the best-validation weights (:func:`best_weights_columns`:
    best_test_loss, best_test_loss_ci_low/high, best_test_accuracy,
    best_test_accuracy_ci_low/high; NaN for a record without them), compute_h
    (training compute hours, queue and restarts excluded), steps, epochs. The unprefixed
    test columns and the margin are the final weights'.
    ``tests`` are :func:`equivox.evaluate.evaluate_test` records, matched to runs by
    ``arch``; ``baselines`` the :func:`equivox.baselines.compute_baselines` record.
    """
    from .baselines import margin_over_best

    by_arch = {test["arch"]: test for test in tests}
    rows = []
    for run in runs:
        final_val = run.rows("val").iloc[-1]
        test = by_arch[run.arch]
        rows.append({
            "model": run.arch, "family": run.spec["family"], "parameters": run.summary["parameters"],
            "val_loss": final_val["val_loss"], "val_accuracy": final_val["val_accuracy"],
            "test_loss": test["loss"], "test_loss_ci_low": test["loss_ci_low"],
            "test_loss_ci_high": test["loss_ci_high"], "test_accuracy": test["accuracy"],
            "test_accuracy_ci_low": test["accuracy_ci_low"],
            "test_accuracy_ci_high": test["accuracy_ci_high"], "test_pairs": test["n_examples"],
            **margin_over_best(test, baselines), **best_weights_columns(test),
            "compute_h": run.summary["compute_s"] / 3600, "steps": run.summary["steps"],
            "epochs": run.summary["epochs"],
        })
    return pd.DataFrame(rows).sort_values("val_loss", kind="stable").reset_index(drop=True)


TEST_FIELDS = ("loss", "loss_ci_low", "loss_ci_high", "accuracy", "accuracy_ci_low", "accuracy_ci_high")
"""The fields of a test record the results table shows, for either weights."""


def best_weights_columns(test: dict) -> dict:
    """``best_test_<field>`` for :data:`TEST_FIELDS` of the record's best-validation
    weights (``test["best"]``); NaN when the record has none."""
    best = test.get("best") or {}
    return {f"best_test_{field}": best.get(field, np.nan) for field in TEST_FIELDS}


def group_order(models: list[str], groups: dict[str, str] | None) -> dict[str, list[str]]:
    """Group -> its runs, groups in the order of their first run in ``models`` (the
    configured order); ``groups``: run -> group (None or a missing run: its own group)."""
    ordered: dict[str, list[str]] = {}
    for model in models:
        ordered.setdefault((groups or {}).get(model, model), []).append(model)
    return ordered


def replicates_table(tests: list[dict], groups: dict[str, str] | None, confidence: float) -> pd.DataFrame:
    """One row per group of replicate runs (``groups``: run -> group, as
    ``run_groups()`` in workflow/rules/common.smk), groups in the order of ``tests``.

    Columns: group, runs (its run names, comma-separated), n (runs), then for
    ``weights`` in final, best (the best-validation weights) and ``metric`` in
    test_accuracy, test_loss: ``<weights>_<metric>`` (the mean over the runs),
    ``<weights>_<metric>_ci_low/high`` (Student t interval of that mean at ``confidence``,
    :func:`equivox.stats.replicate_summary`; NaN for one run) and
    ``<weights>_<metric>_sd`` (standard deviation over the runs; NaN for one run).
    """
    from .stats import replicate_summary

    by_arch = {test["arch"]: test for test in tests}
    rows = []
    for group, members in group_order(list(by_arch), groups).items():
        row = {"group": group, "runs": ", ".join(members), "n": len(members)}
        for weights in ("final", "best"):
            records = [by_arch[m] if weights == "final" else by_arch[m].get("best") for m in members]
            for metric in ("accuracy", "loss"):
                values = [np.nan if r is None else r[metric] for r in records]
                name = f"{weights}_test_{metric}"
                if np.isnan(values).any():
                    row.update({name: np.nan, f"{name}_ci_low": np.nan, f"{name}_ci_high": np.nan,
                                f"{name}_sd": np.nan})
                    continue
                summary = replicate_summary(values, confidence)
                row.update({name: summary["mean"], f"{name}_ci_low": summary["ci_low"],
                            f"{name}_ci_high": summary["ci_high"], f"{name}_sd": summary["sd"]})
        rows.append(row)
    return pd.DataFrame(rows)


COMPARISON_COLUMNS = [
    "a", "b", "weights", "direction", "n_examples", "replicates_a", "replicates_b", "accuracy_a", "accuracy_b",
    "accuracy_diff", "accuracy_diff_ci_low", "accuracy_diff_ci_high", "accuracy_p", "accuracy_p_holm", "b_better",
    "a_better", "loss_a", "loss_b", "loss_diff", "loss_diff_ci_low", "loss_diff_ci_high", "loss_p", "loss_p_holm",
    "confidence", "n_resamples", "seed"]


def comparison_pairs(compare, groups: list[str], unselected=()) -> list[tuple[str, str]]:
    """The ``analysis.compare`` pairs ``[A, B]`` to compare, checked against ``groups``
    (the groups of the configured runs). A pair naming a run of the architecture set that
    ``train.models`` left out (``unselected``) is skipped with a note on stderr; any
    other unknown name is a ValueError naming ``config analysis.compare``, the name and
    the groups."""
    import sys

    pairs = []
    for a, b in compare:
        unknown = [name for name in (a, b) if name not in groups]
        if not unknown:
            pairs.append((a, b))
        elif all(name in unselected for name in unknown):
            print(f"equivox: config analysis.compare: [{a}, {b}] skipped: {', '.join(unknown)} not among "
                  "train.models", file=sys.stderr)
        else:
            name = next(name for name in unknown if name not in unselected)
            raise ValueError(f"config analysis.compare: {name!r} (in [{a}, {b}]) is not a group of the "
                             f"configured runs (groups: {', '.join(groups)})")
    return pairs


def comparison_table(examples: dict[str, dict[str, np.ndarray]], groups: dict[str, str] | None,
                     pairs, *, confidence: float, n_resamples: int, seed: int) -> pd.DataFrame:
    """One row per configured pair ``(A, B)`` of groups and per weights (final, then best):
    B minus A on the same test pairs (:func:`equivox.stats.paired_comparison`; a group of
    several runs is first averaged per example over its runs).

    ``examples``: run -> its per-example arrays (analysis/test/<arch>.examples.npz,
    :data:`equivox.stats.EXAMPLE_ARRAYS`); ``groups``: run -> group. Columns
    (:data:`COMPARISON_COLUMNS`): a, b, weights, direction ("B minus A"), n_examples,
    replicates_a/b, accuracy_a/b, accuracy_diff with _ci_low/_ci_high (paired
    bootstrap, percentile) and accuracy_p (exact sign test; McNemar's exact test for
    single runs), b_better / a_better (examples where B / A is right more often),
    loss_a/b, loss_diff with _ci_low/_ci_high and loss_p (sign-flip permutation test),
    confidence, n_resamples, seed. ``accuracy_p_holm`` and ``loss_p_holm`` are the
    p-values Holm-adjusted (:func:`equivox.stats.holm_adjust`) over the configured pairs,
    separately for the final and the best weights (one family per weights and metric:
    m = the number of pairs; with one pair they equal the unadjusted ones).
    """
    from .stats import holm_adjust, paired_comparison

    members = group_order(list(examples), groups)
    rows = []
    for a, b in pairs:
        for weights in ("final", "best"):
            sides = [[examples[run][f"{kind}_{weights}"] for run in members[g]]
                     for g in (a, b) for kind in ("correct", "loss")]
            result = paired_comparison(*sides, n_resamples=n_resamples, seed=seed, confidence=confidence)
            rows.append({"a": a, "b": b, "weights": weights, **result})
    table = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    for metric in ("accuracy", "loss"):
        for weights in ("final", "best"):
            family = table["weights"] == weights
            table.loc[family, f"{metric}_p_holm"] = holm_adjust(table.loc[family, f"{metric}_p"])
    return table


def steady_windows(run: Run) -> pd.DataFrame:
    """The run's training windows after the first (all of them if there is only one)."""
    train = run.rows("train")
    return train.iloc[1:] if len(train) > 1 else train


def speed_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run, in the given order.

    Columns: model, device (GPU model or "cpu"), parameters, iterations_per_s,
    examples_per_s, data_wait_fraction (medians over :func:`steady_windows`),
    epoch_time_h, gpu_mem_allocated_peak_GiB, gpu_mem_reserved_peak_GiB (NaN on CPU),
    host_rss_peak_GiB, steps, epochs.
    """
    rows = []
    for run in runs:
        windows, metrics, summary = steady_windows(run), run.metrics, run.summary
        examples_per_s = windows["examples_per_s"].median()
        examples_per_epoch = summary["examples_seen"] / summary["epochs"] if summary["epochs"] else np.nan
        rows.append({
            "model": run.arch, "device": summary["gpu_model"] or summary["device"],
            "parameters": summary["parameters"],
            "iterations_per_s": windows["iterations_per_s"].median(),
            "examples_per_s": examples_per_s,
            "data_wait_fraction": windows["data_wait_fraction"].median(),
            "epoch_time_h": examples_per_epoch / examples_per_s / 3600,
            "gpu_mem_allocated_peak_GiB": metrics["gpu_mem_allocated_peak_bytes"].max() / GIB,
            "gpu_mem_reserved_peak_GiB": metrics["gpu_mem_reserved_peak_bytes"].max() / GIB,
            "host_rss_peak_GiB": metrics["host_rss_bytes"].max() / GIB,
            "steps": summary["steps"], "epochs": summary["epochs"],
        })
    return pd.DataFrame(rows)


DEAD_UNITS_WEIGHTS = ("final", "best")
"""The weights a dead-units record is of: ``<arch>.tsv`` the final ones, ``<arch>.best.tsv``
the best ones (lowest validation loss)."""


def dead_units_source(path) -> tuple[str, str]:
    """``(model, weights)`` of a dead-units record path (:data:`DEAD_UNITS_WEIGHTS`), as
    :func:`build_table` reads the ``dead_units`` paths it is given."""
    name = Path(path).name
    if name.endswith(".best.tsv"):
        return name[:-len(".best.tsv")], "best"
    return Path(path).stem, "final"


def dead_units_table(layer_tables: dict) -> pd.DataFrame:
    """Long table, one row per model, weights and hooked layer: model, weights (final |
    best), layer_index, layer (module path), layer_name (stage and block), relative_depth,
    kind, function, unit (channel | field | gate), units, dead, dormant, and the same counts
    in physical channels: channels, dead_channels, dormant_channels (from the per-run
    :func:`equivox.dead_units.layer_table`). ``layer_tables`` is keyed by model (final
    weights) or by ``(model, weights)``; models keep their first order, each model's
    final weights before its best."""
    columns = ["layer_index", "layer", "layer_name", "relative_depth", "kind", "function", "unit",
               "units", "dead", "dormant", "channels", "dead_channels", "dormant_channels"]
    keyed = {(key, "final") if isinstance(key, str) else tuple(key): table for key, table in layer_tables.items()}
    models = list(dict.fromkeys(model for model, _ in keyed))
    order = sorted(keyed, key=lambda k: (models.index(k[0]), DEAD_UNITS_WEIGHTS.index(k[1])))
    return pd.concat([keyed[key][columns].assign(model=key[0], weights=key[1]) for key in order],
                     ignore_index=True)[["model", "weights", *columns]]


# --- shown form ----------------------------------------------------------------------

def _number(value, digits: int = 3) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


def _significant(value, digits: int = 3) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}g}"


def _interval(value, low, high, digits: int = 3) -> str:
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _maybe_interval(value, low, high, digits: int = 3) -> str:
    """``value [low, high]``; the value alone when there is no interval; "–" for no value."""
    if pd.isna(value):
        return "–"
    if pd.isna(low) or pd.isna(high):
        return _number(value, digits)
    return _interval(value, low, high, digits)


def _p_value(p) -> str:
    return "–" if pd.isna(p) else (f"{p:.2g}" if p >= 0.001 else "< 0.001")


def _p_values(table: pd.DataFrame, metric: str) -> list[str]:
    """``p; Holm-adjusted p`` cells of a comparison table."""
    return [f"{_p_value(p)}; {_p_value(holm)}"
            for p, holm in table[[f"{metric}_p", f"{metric}_p_holm"]].itertuples(index=False)]


def shown_results(table: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """Rounded results table with the intervals written next to the values: the final
    weights' test results and margin, then the best-validation weights' test results."""
    ci = f"{confidence:.0%} CI"
    return pd.DataFrame({
        "model": table["model"], "family": table["family"],
        "parameters": table["parameters"].map("{:,}".format),
        "val loss": table["val_loss"].map(_number), "val accuracy": table["val_accuracy"].map(_number),
        f"test accuracy [{ci}]": [_interval(*r) for r in table[
            ["test_accuracy", "test_accuracy_ci_low", "test_accuracy_ci_high"]].itertuples(index=False)],
        f"test loss [{ci}]": [_interval(*r) for r in table[
            ["test_loss", "test_loss_ci_low", "test_loss_ci_high"]].itertuples(index=False)],
        "test pairs": table["test_pairs"],
        f"margin over best baseline [{ci}]": [
            _interval(*r[:3], digits=3) + ("" if r[3] else " (not above)") for r in table[
                ["margin", "margin_ci_low", "margin_ci_high", "beats_baseline"]].itertuples(index=False)],
        f"best-val weights: test accuracy [{ci}]": [_maybe_interval(*r) for r in table[
            ["best_test_accuracy", "best_test_accuracy_ci_low", "best_test_accuracy_ci_high"]].itertuples(index=False)],
        f"best-val weights: test loss [{ci}]": [_maybe_interval(*r) for r in table[
            ["best_test_loss", "best_test_loss_ci_low", "best_test_loss_ci_high"]].itertuples(index=False)],
        "compute (h)": table["compute_h"].map(_significant),
        "steps": table["steps"], "epochs": table["epochs"].map(lambda e: _number(e, 4)),
    })


def shown_replicates(table: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """Per group: its runs, n, and the mean test accuracy and loss over the runs with the
    t interval, for the final and the best-validation weights (one run: the value alone)."""
    ci = f"{confidence:.0%} t CI"
    columns = {"group": table["group"], "runs": table["runs"], "n": table["n"]}
    for weights, label in (("final", "final weights"), ("best", "best-val weights")):
        for metric in ("accuracy", "loss"):
            name = f"{weights}_test_{metric}"
            columns[f"{label}: mean test {metric} [{ci}]"] = [
                _maybe_interval(*r) for r in table[[name, f"{name}_ci_low", f"{name}_ci_high"]].itertuples(index=False)]
    return pd.DataFrame(columns)


def shown_comparison(table: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """Per pair and weights (plain ASCII: the LaTeX compiles without Unicode setup): A, B,
    the accuracies and their difference B - A with the
    paired bootstrap interval and the exact (McNemar / sign test) p-value, then the
    same for the loss with the sign-flip permutation p-value; each p-value beside its
    Holm-adjusted value over the configured pairs ("p; Holm")."""
    ci = f"{confidence:.0%} bootstrap CI"
    return pd.DataFrame({
        "A": table["a"], "B": table["b"], "weights": table["weights"], "test pairs": table["n_examples"],
        "runs (A, B)": [f"{a}, {b}" for a, b in table[["replicates_a", "replicates_b"]].itertuples(index=False)],
        "accuracy A, B": [f"{a:.3f}, {b:.3f}" for a, b in table[["accuracy_a", "accuracy_b"]]
                          .itertuples(index=False)],
        f"accuracy B - A [{ci}]": [_interval(*r) for r in table[
            ["accuracy_diff", "accuracy_diff_ci_low", "accuracy_diff_ci_high"]].itertuples(index=False)],
        "accuracy p (exact); Holm": _p_values(table, "accuracy"),
        "loss A, B": [f"{a:.3f}, {b:.3f}" for a, b in table[["loss_a", "loss_b"]].itertuples(index=False)],
        f"loss B - A [{ci}]": [_interval(*r) for r in table[
            ["loss_diff", "loss_diff_ci_low", "loss_diff_ci_high"]].itertuples(index=False)],
        "loss p (sign flip); Holm": _p_values(table, "loss"),
    })


def baselines_table(baselines: dict) -> pd.DataFrame:
    """One row per evaluation set and baseline (:func:`equivox.baselines.compute_baselines`):
    split, baseline, n_examples, correct, accuracy, accuracy_ci_low/high, best (the
    baseline chosen on the validation set)."""
    return pd.DataFrame([{"split": split, **row, "best": row["baseline"] == baselines["best"]}
                         for split, data in baselines["sets"].items() for row in data["rows"]])


def shown_baselines(table: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """Baselines (rows) x evaluation sets (columns), accuracy with its interval."""
    ci = f"{confidence:.0%} CI"
    cells = table.assign(cell=[_interval(*r) for r in table[
        ["accuracy", "accuracy_ci_low", "accuracy_ci_high"]].itertuples(index=False)])
    cells.loc[cells["baseline"] == "chance", "cell"] = cells["accuracy"].map(_number)
    wide = cells.pivot(index="baseline", columns="split", values="cell")
    wide = wide.loc[list(dict.fromkeys(table["baseline"]))]
    wide.columns = [f"{split} accuracy [{ci}]" for split in wide.columns]
    best = table.loc[table["best"], "baseline"].iloc[0]
    wide.index = [f"{name} (best)" if name == best else name for name in wide.index]
    return wide.rename_axis("baseline").reset_index()


def shown_speed(table: pd.DataFrame) -> pd.DataFrame:
    """Rounded speed and memory table."""
    return pd.DataFrame({
        "model": table["model"], "device": table["device"],
        "parameters": table["parameters"].map("{:,}".format),
        "it/s": table["iterations_per_s"].map(lambda v: _number(v, 2)),
        "examples/s": table["examples_per_s"].map(lambda v: _number(v, 1)),
        "data wait": table["data_wait_fraction"].map(lambda v: f"{v:.1%}"),
        "epoch time (h)": table["epoch_time_h"].map(_significant),
        "GPU peak allocated (GiB)": table["gpu_mem_allocated_peak_GiB"].map(lambda v: _number(v, 2)),
        "GPU peak reserved (GiB)": table["gpu_mem_reserved_peak_GiB"].map(lambda v: _number(v, 2)),
        "host RSS peak (GiB)": table["host_rss_peak_GiB"].map(lambda v: _number(v, 2)),
        "steps": table["steps"], "epochs": table["epochs"].map(lambda e: _number(e, 4)),
    })


def _dead_cell(dead, units, dead_channels, channels) -> str:
    return f"{dead}/{units} ({dead_channels}/{channels})"


def shown_dead_units(table: pd.DataFrame) -> pd.DataFrame:
    """Per model and weights (final, then best), its layers in forward order by readable
    name, each with its nonlinearity and ``dead/units (dead/channels)`` and the same for
    dormant units; then the total over its layers. Units are a plain channel, an escnn
    field or a gate; channels are physical (tensor) channels, comparable across families."""
    rows = []
    for (model, weights), layers in table.groupby(["model", "weights"], sort=False):
        for row in layers.itertuples(index=False):
            rows.append({"model": model, "weights": weights, "layer": row.layer_name,
                         "nonlinearity": f"{row.function} ({row.kind})",
                         "dead/units (channels)": _dead_cell(row.dead, row.units, row.dead_channels, row.channels),
                         "dormant/units (channels)": _dead_cell(row.dormant, row.units, row.dormant_channels,
                                                                row.channels)})
        total = layers[["dead", "dormant", "units", "dead_channels", "dormant_channels", "channels"]].sum()
        rows.append({"model": model, "weights": weights, "layer": "all layers", "nonlinearity": "",
                     "dead/units (channels)": _dead_cell(*total[["dead", "units", "dead_channels", "channels"]]),
                     "dormant/units (channels)": _dead_cell(*total[["dormant", "units", "dormant_channels",
                                                                   "channels"]])})
    return pd.DataFrame(rows).astype(str)


# --- writing ---------------------------------------------------------------------------

def write_table(numbers: pd.DataFrame, shown: pd.DataFrame, csv_path, md_path, tex_path, html_path) -> None:
    """``numbers`` to CSV; ``shown`` to Markdown, LaTeX and HTML."""
    numbers.to_csv(csv_path, index=False)
    Path(md_path).write_text(shown.to_markdown(index=False, tablefmt="github") + "\n")
    # booktabs tabular, LaTeX special characters escaped, first column left, others right
    latex = shown.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    Path(tex_path).write_text(latex.to_latex(column_format="l" + "r" * (len(shown.columns) - 1), hrules=True))
    Path(html_path).write_text(html_page(shown, Path(html_path).stem))


HTML_STYLE = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 1em; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 0.3em 0.8em; text-align: right; white-space: nowrap; }
thead th { position: sticky; top: 0; background: #f0f0f0; border-bottom: 2px solid #555; vertical-align: bottom; }
tbody tr:nth-child(even) { background: #f8f8f8; }
tbody tr:hover { background: #e6eefc; }
tbody tr:last-child td { border-bottom: 1px solid #555; }
"""
"""Style of the HTML tables: numbers right-aligned in tabular figures, text columns
left, a sticky header, banded rows."""


def _is_text_column(values: pd.Series) -> bool:
    """A column of words (model, family, layer names), not of numbers or intervals."""
    shown = [str(v) for v in values if str(v) not in ("", "–")]
    return bool(shown) and all(not (v[0].isdigit() or v[0] in "-−+.") for v in shown)


def html_page(shown: pd.DataFrame, title: str) -> str:
    """``shown`` as a standalone HTML page, styled for reading (:data:`HTML_STYLE`)."""
    left = [i for i, column in enumerate(shown.columns, start=1) if _is_text_column(shown[column])]
    align = "".join(f"td:nth-child({i}), th:nth-child({i}) {{ text-align: left; }}\n" for i in left)
    return html_document(title, shown.to_html(index=False, border=0, justify="left"), align)


def html_document(title: str, body: str, style: str = "") -> str:
    """A standalone HTML page around ``body`` (HTML), in :data:`HTML_STYLE` plus ``style``."""
    from html import escape

    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f"<style>{HTML_STYLE}{style}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


TABLES = ("results", "baselines", "speed", "dead_units", "replicates", "comparison")


def build_table(name: str, *, confidence: float, runs=(), tests=(), dead_units=(), baselines=(), examples=(),
                groups: dict[str, str] | None = None, compare=(), bootstrap: dict | None = None
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(numbers, shown)`` of table ``name`` from record paths: ``runs`` (final/run.json),
    ``tests`` (analysis/test/<arch>.json), ``dead_units`` (analysis/dead_units/<arch>.tsv),
    ``baselines`` (one path: analysis/baselines/test.json), ``examples``
    (analysis/test/<arch>.examples.npz); ``groups``: run -> replicate group
    (``run_groups()``; None: every run its own group); ``compare``: the checked
    ``analysis.compare`` pairs; ``bootstrap``: ``analysis.bootstrap`` (n_resamples, seed)."""
    baseline_record = json.loads(Path(baselines[0]).read_text()) if baselines else None
    if name == "replicates":
        numbers = replicates_table([json.loads(Path(path).read_text()) for path in tests], groups, confidence)
        return numbers, shown_replicates(numbers, confidence)
    if name == "comparison":
        from .stats import read_examples

        if bootstrap is None:
            raise ValueError("the comparison table needs bootstrap (config analysis.bootstrap: n_resamples, seed)")
        arrays = {Path(path).name.removesuffix(".examples.npz"): read_examples(path) for path in examples}
        numbers = comparison_table(arrays, groups, [tuple(pair) for pair in compare], confidence=confidence,
                                   n_resamples=bootstrap["n_resamples"], seed=bootstrap["seed"])
        return numbers, shown_comparison(numbers, confidence)
    if name == "results":
        numbers = results_table([read_run(path) for path in runs],
                                [json.loads(Path(path).read_text()) for path in tests], baseline_record)
        return numbers, shown_results(numbers, confidence)
    if name == "baselines":
        numbers = baselines_table(baseline_record)
        return numbers, shown_baselines(numbers, confidence)
    if name == "speed":
        numbers = speed_table([read_run(path) for path in runs])
        return numbers, shown_speed(numbers)
    if name == "dead_units":
        numbers = dead_units_table({dead_units_source(path): pd.read_csv(path, sep="\t") for path in dead_units})
        return numbers, shown_dead_units(numbers)
    raise ValueError(f"unknown table {name!r}; one of {TABLES}")


# --- equivariance, measured (equivox.equivariance) ---------------------------------------

def equivariance_table(summaries: list[dict]) -> pd.DataFrame:
    """One row per model, in the given order, from :func:`equivox.equivariance.measure_equivariance`
    summaries (``results/analysis/equivariance/<arch>.json``).

    Columns: model, family, equivariant (a representation is promised), features (F),
    invariant_features (F0; = F for plain models), examples, stored_image_error, spread
    and mean feature norm (invariant and full features), then for each transform kind
    (identity, cube, haar, angle) and each metric (invariant_rel, invariant_spread,
    equivariant_rel, equivariant_spread) ``<kind>_<metric>`` (mean over examples and
    rotations) with ``_ci_low``, ``_ci_high`` (normal interval of the per-example means)
    and ``_max``.
    """
    rows = []
    for summary in summaries:
        row = {"model": summary["arch"], "family": summary["family"],
               "equivariant": summary["equivariant"], "features": summary["n_features"],
               "invariant_features": summary["n_invariant"], "examples": summary["n_examples"],
               "stored_image_error": summary["stored_image_error"],
               "spread_invariant": summary["spread"]["invariant"],
               "spread_equivariant": summary["spread"]["equivariant"],
               "norm_invariant": summary["spread"]["invariant_norm"],
               "norm_equivariant": summary["spread"]["equivariant_norm"]}
        for kind, metrics in summary["kinds"].items():
            for metric, stats in metrics.items():
                row[f"{kind}_{metric}"] = stats["mean"]
                row.update({f"{kind}_{metric}_{key}": stats[key] for key in ("ci_low", "ci_high", "max")})
        rows.append(row)
    return pd.DataFrame(rows)


def shown_equivariance(table: pd.DataFrame) -> pd.DataFrame:
    """Rounded equivariance table (3 significant digits): per model the invariant-feature
    error relative to the between-example spread under each transform, the same relative
    to the features' norm for random rotations, and the full-feature (equivariance) error
    relative to the spread; plain models promise nothing, so for them both are the plain
    change of all features."""
    def column(name):
        return table[name].map(_significant) if name in table else "–"

    features = [f"{f} ({f0} invariant)" if equivariant else f"{f} (none promised)"
                for f, f0, equivariant in table[["features", "invariant_features", "equivariant"]]
                .itertuples(index=False)]
    return pd.DataFrame({
        "model": table["model"], "family": table["family"], "features": features,
        "examples": table["examples"],
        "floor: invariant / spread": column("identity_invariant_spread"),
        "cube: invariant / spread": column("cube_invariant_spread"),
        "cube: equivariant / spread": column("cube_equivariant_spread"),
        "random: invariant / norm": column("haar_invariant_rel"),
        "random: invariant / spread": column("haar_invariant_spread"),
        "random: equivariant / spread": column("haar_equivariant_spread"),
    })


def build_equivariance_table(summaries) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(numbers, shown)`` of the equivariance table from summary JSON paths."""
    numbers = equivariance_table([json.loads(Path(path).read_text()) for path in summaries])
    return numbers, shown_equivariance(numbers)
