"""The whole demo, `snakemake --cores 2 all`, run once by real Snakemake on real structures:
every demo architecture trained, analysed, plotted and tabulated; the report built.

The workflow source (Snakefile, rules, scripts, config) is copied to a temporary folder
so that a test can edit a plotting script and see what Snakemake would rerun.
"""
import copy
import csv
import json
import os
import re
import shutil
import statistics
from pathlib import Path

import pytest
import yaml

from tests.browser import Browser, chromium
from tests.workflow_helpers import REPO, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

SOURCE = ["Snakefile", "workflow", "scripts", "config", "envs"]
ARCHS = list(yaml.safe_load((REPO / "config/architectures/demo.yaml").read_text()))
FIGURES = ["validation_vs_steps", "validation_vs_compute", "training_vs_steps", "test_results",
           "dead_units_summary", "equivariance", *(f"dead_units/{arch}" for arch in ARCHS)]
TABLES = ["results", "baselines", "speed", "dead_units", "equivariance", "replicates", "comparison", "memory"]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def planned_rules(proc) -> set[str]:
    """The rules a dry run (-n) would run (the target rule `all` aside)."""
    return set(re.findall(r"^(?:local)?rule (\w+):", proc.stdout, re.M)) - {"all"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    source = tmp_path_factory.mktemp("source")
    for name in SOURCE:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(REPO / name, source / name)
    workdir = tmp_path_factory.mktemp("demo")
    proc = snakemake(workdir, "all", snakefile=source / "Snakefile", timeout_s=2400)
    return source, workdir, proc


def test_every_demo_architecture_trains_to_completion(demo):
    _, workdir, proc = demo
    train = yaml.safe_load((REPO / "config/config.yaml").read_text())["train"]
    for arch in ARCHS:
        run = workdir / "results/runs" / arch
        status = json.loads((run / "status.json").read_text())
        steps = (train.get("max_steps_per_model") or {}).get(arch, train["max_steps"])
        assert (status["status"], status["step"]) == ("complete", steps), arch
        for name in ("weights.pt", "metrics.csv", "run.json"):
            assert (run / "final" / name).stat().st_size > 0, (arch, name)
        for name in ("settings.yaml", "config.yaml", "environment.json"):
            assert (run / name).exists(), (arch, name)
        assert f"{arch}" in proc.stdout and "complete" in proc.stdout  # onsuccess status lines


def test_figures_tables_and_paper_folder_exist(demo):
    _, workdir, _ = demo
    results = workdir / "results"
    for name in FIGURES:
        svg, pdf = (results / "figures" / f"{name}.{ext}" for ext in ("svg", "pdf"))
        assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text(), name
        assert pdf.read_bytes().startswith(b"%PDF"), name
        assert (results / "paper/figures" / f"{name}.svg").read_bytes() == svg.read_bytes()
    for name in TABLES:
        for ext in ("csv", "md", "tex", "html"):
            assert (results / "tables" / f"{name}.{ext}").stat().st_size > 0, (name, ext)
    assert (results / "paper/figures/view_pairs.svg").exists()
    for arch in ARCHS:
        layers = list(csv.DictReader(open(results / f"analysis/dead_units/{arch}.tsv"), delimiter="\t"))
        assert layers and all(0 <= int(r["dead"]) <= int(r["units"]) for r in layers), arch


def test_results_table_equals_a_recount_from_the_metrics(demo):
    """Final validation numbers, steps and test results, recomputed from the raw records."""
    _, workdir, _ = demo
    table = {row["model"]: row for row in read_csv(workdir / "results/tables/results.csv")}
    assert sorted(table) == sorted(ARCHS)
    val_losses = [float(row["val_loss"]) for row in read_csv(workdir / "results/tables/results.csv")]
    assert val_losses == sorted(val_losses)
    for arch in ARCHS:
        metrics = read_csv(workdir / f"results/runs/{arch}/final/metrics.csv")
        last_val = [r for r in metrics if r["kind"] == "val"][-1]
        row = table[arch]
        assert float(row["val_loss"]) == pytest.approx(float(last_val["val_loss"]), rel=1e-12)
        assert float(row["val_accuracy"]) == pytest.approx(float(last_val["val_accuracy"]), rel=1e-12)
        assert int(row["steps"]) == max(int(r["step"]) for r in metrics)
        test = json.loads((workdir / f"results/analysis/test/{arch}.json").read_text())
        assert float(row["test_accuracy"]) == pytest.approx(test["accuracy"], rel=1e-12)
        assert float(row["test_accuracy_ci_low"]) <= test["accuracy"] <= float(row["test_accuracy_ci_high"])


def test_the_demo_task_does_not_leak_through_the_seam(demo):
    """The seam rule (matching the facing boundary layers) is near chance on the demo's
    validation set, and every model's margin over the best baseline is tabulated."""
    _, workdir, _ = demo
    baselines = json.loads((workdir / "results/analysis/baselines/test.json").read_text())
    accuracy = {r["baseline"]: r["accuracy"] for r in baselines["sets"]["val"]["rows"]}
    assert accuracy["seam"] <= 1 / 6 + 0.1, accuracy
    assert baselines["best"] in accuracy and baselines["best"] != "chance"
    rows = read_csv(workdir / "results/tables/results.csv")
    assert all(row["best_baseline"] == baselines["best"] for row in rows)
    assert all(float(row["margin_ci_low"]) <= float(row["margin"]) <= float(row["margin_ci_high"]) for row in rows)


def test_speed_table_equals_a_recount_from_the_metrics(demo):
    _, workdir, _ = demo
    table = {row["model"]: row for row in read_csv(workdir / "results/tables/speed.csv")}
    for arch in ARCHS:
        train = [r for r in read_csv(workdir / f"results/runs/{arch}/final/metrics.csv") if r["kind"] == "train"]
        steady = train[1:]  # the first logging window holds the warm-up
        row = table[arch]
        for column in ("iterations_per_s", "examples_per_s", "data_wait_fraction"):
            expected = statistics.median(float(r[column]) for r in steady)
            assert float(row[column]) == pytest.approx(expected, rel=1e-12), (arch, column)
        assert row["device"] == "cpu"


def test_dead_units_table_equals_the_per_run_analyses(demo):
    _, workdir, _ = demo
    table = read_csv(workdir / "results/tables/dead_units.csv")
    for arch in ARCHS:
        for weights, suffix in (("final", "tsv"), ("best", "best.tsv")):
            path = workdir / f"results/analysis/dead_units/{arch}.{suffix}"
            layers = list(csv.DictReader(open(path), delimiter="\t"))
            rows = [r for r in table if r["model"] == arch and r["weights"] == weights]
            assert [(r["layer"], r["units"], r["dead"]) for r in rows] == \
                [(r["layer"], r["units"], r["dead"]) for r in layers], (arch, weights)


def test_final_and_best_test_results_per_pair_and_the_paired_comparison(demo):
    """Per-pair test records recount to the test summaries; the comparison table's
    differences and discordant counts recount from them (B minus A)."""
    import numpy as np

    _, workdir, _ = demo
    results = {row["model"]: row for row in read_csv(workdir / "results/tables/results.csv")}
    examples = {}
    for arch in ARCHS:
        test = json.loads((workdir / f"results/analysis/test/{arch}.json").read_text())
        with np.load(workdir / f"results/analysis/test/{arch}.examples.npz") as npz:
            arrays = {key: npz[key] for key in npz.files}
        examples[arch] = arrays
        for weights, record in (("final", test), ("best", test["best"])):
            correct, loss = arrays[f"correct_{weights}"], arrays[f"loss_{weights}"]
            assert correct.dtype == bool and loss.dtype == np.float32 and len(correct) == record["n_examples"]
            assert int(correct.sum()) == record["correct"], (arch, weights)
            assert float(loss.mean()) == pytest.approx(record["loss"], rel=1e-5), (arch, weights)
        assert float(results[arch]["best_test_accuracy"]) == pytest.approx(test["best"]["accuracy"], rel=1e-12)
    replicates = {row["group"]: row for row in read_csv(workdir / "results/tables/replicates.csv")}
    assert sorted(replicates) == sorted(ARCHS) and all(int(r["n"]) == 1 for r in replicates.values())
    comparison = read_csv(workdir / "results/tables/comparison.csv")
    assert len(comparison) == 4 and {r["weights"] for r in comparison} == {"final", "best"}, comparison
    for row in comparison:
        assert row["a"].startswith("plain_") and row["direction"] == "B minus A"
        diff = float(row["accuracy_diff"])
        assert diff == pytest.approx(float(row["accuracy_b"]) - float(row["accuracy_a"]), abs=1e-9)
        assert float(row["accuracy_diff_ci_low"]) <= diff <= float(row["accuracy_diff_ci_high"])
        assert 0 < float(row["accuracy_p"]) <= 1 and 0 < float(row["loss_p"]) <= 1
        # two pairs per weights: Holm doubles the smaller p, keeps the larger (at least that)
        assert float(row["accuracy_p"]) <= float(row["accuracy_p_holm"]) <= min(1, 2 * float(row["accuracy_p"]))
        if row["weights"] == "final":
            a, b = examples[row["a"]]["correct_final"], examples[row["b"]]["correct_final"]
            assert int(row["b_better"]) == int((b & ~a).sum()) and int(row["a_better"]) == int((a & ~b).sum())


def test_memory_probe_fits_every_model_on_cpu(demo):
    _, workdir, _ = demo
    table = {row["model"]: row for row in read_csv(workdir / "results/tables/memory.csv")}
    assert sorted(table) == sorted(ARCHS), table
    for arch in ARCHS:
        rows = list(csv.DictReader(open(workdir / f"results/analysis/memory/{arch}.tsv"), delimiter="\t"))
        assert [int(r["batch_size"]) for r in rows] == [1, 2, 4] and {r["measured_on"] for r in rows} == {"cpu RSS"}
        summary = json.loads((workdir / f"results/analysis/memory/{arch}.json").read_text())
        assert summary["largest_batch"] > 4 and summary["fit"]["slope_bytes_per_example"] > 0, summary
        assert int(table[arch]["largest_batch"]) == summary["largest_batch"]


def built_report(demo) -> Path:
    """report.html of the demo, built once (snakemake --report)."""
    source, workdir, _ = demo
    report = workdir / "report.html"
    if not report.exists():
        snakemake(workdir, "--report", "report.html", snakefile=source / "Snakefile")
    return report


def test_report_builds(demo):
    html = built_report(demo).read_text(errors="replace")
    assert "test_results.svg" in html and "validation_vs_steps.svg" in html
    assert "run_description.html" in html and "What was run" in html
    assert "comparison.html" in html and "replicates.html" in html and "memory.html" in html


@pytest.mark.skipif(chromium() is None, reason="chromium not installed (apt-get install chromium): "
                                               "the report is not checked in a browser")
def test_report_renders_in_a_browser_without_errors(demo):
    """The main page (the workflow description), one figure and the run description load
    in headless chromium with no console error, uncaught exception or failed load."""
    report = built_report(demo)
    with Browser() as browser:
        assert browser.open(report.as_uri()) == []
        assert browser.evaluate("document.body.innerText.includes('What was run')")
        for name, kind in (("test_results.svg", "img"), ("run_description.html", "html")):
            path = browser.evaluate(f"Object.keys(results).find(p => p.endsWith('/{name}'))")
            assert path, name
            browser.evaluate(f"app.showResultInfo({path!r}); app.setView({{content: {kind!r}, "
                             f"contentPath: results[{path!r}].data_uri}}); true", settle_s=1.5)
            shown = browser.evaluate(
                f"(() => {{ const el = [...document.querySelectorAll({'img' if kind == 'img' else 'iframe'!r})]"
                f".find(e => e.src === results[{path!r}].data_uri); "
                f"return el ? (el.tagName === 'IMG' ? el.complete && el.naturalWidth > 100 : true) : false }})()")
            assert shown, name
        assert browser.errors == []


def test_rerun_has_nothing_to_do_and_a_plot_edit_reruns_only_its_figure(demo):
    source, workdir, _ = demo
    proc = snakemake(workdir, "all", "-n", snakefile=source / "Snakefile")
    assert "Nothing to be done" in proc.stdout, proc.stdout[-3000:]
    script = source / "scripts/plot_test_results.py"
    text, stat = script.read_text(), script.stat()
    script.write_text(text + "\n# a cosmetic edit\n")
    try:
        proc = snakemake(workdir, "all", "-n", snakefile=source / "Snakefile")
    finally:  # Snakemake's code trigger compares the script's time with the outputs'
        script.write_text(text)
        os.utime(script, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert planned_rules(proc) == {"plot_test_results", "paper_figures"}, proc.stdout[-3000:]


def test_editing_analysis_or_test_set_options_retrains_nothing(demo):
    """Rules take only the config sections they use as params."""
    source, workdir, _ = demo
    proc = snakemake(workdir, "all", "-n", snakefile=source / "Snakefile",
                     config={"analysis": {"figures": {"smoothing": 0.3}}})
    # describe_run: the report's run description shows the whole config
    assert planned_rules(proc) == {"plot_curves", "paper_figures", "describe_run"}, proc.stdout[-3000:]
    proc = snakemake(workdir, "all", "-n", snakefile=source / "Snakefile",
                     config={"train": {"num_workers": 3, "keep_checkpoints": 4}})
    assert planned_rules(proc) == {"describe_run"}, proc.stdout[-3000:]
    proc = snakemake(workdir, "all", "-n", snakefile=source / "Snakefile", config={"views": {"n_test": 128}})
    planned = planned_rules(proc)
    assert "views" in planned and "evaluate_test" in planned, proc.stdout[-3000:]
    assert not planned & {"train_model", "analyze_dead_units", "plot_curves", "origin_database"}, planned
    # materialised training shards become the training data: the models retrain from them
    proc = snakemake(workdir, "all", "-n", snakefile=source / "Snakefile",
                     config={"views": {"train_shards": 2, "train_shard_size": 16}})
    assert {"views_train_shard", "train_model"} <= planned_rules(proc), proc.stdout[-3000:]


def test_a_failing_model_is_recorded_and_reported(demo, tmp_path):
    """An architecture whose weights cannot be allocated: status oom, the workflow fails
    and names it, the finished runs are untouched."""
    source, workdir, _ = demo
    before = (workdir / f"results/runs/{ARCHS[0]}/final/weights.pt").read_bytes()
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({"huge": {"family": "plain_cnn", "layout": "arch_3",
                                               "width": 200_000, "repeats": 1}}))
    proc = snakemake(workdir, "results/runs/huge/final/run.json", snakefile=source / "Snakefile",
                     config={"train": {"architectures": str(broken)}}, check=False)
    assert proc.returncode != 0
    status = json.loads((workdir / "results/runs/huge/status.json").read_text())
    assert status["status"] == "oom", status
    assert "huge" in proc.stdout and "oom" in proc.stdout, proc.stdout[-3000:]
    assert (workdir / f"results/runs/{ARCHS[0]}/final/weights.pt").read_bytes() == before


def test_the_tiny_study_trains_its_grid_with_replicates_and_a_new_value_adds_only_its_runs(demo, tmp_path):
    """`snakemake all --configfile config/studies/tiny.yaml` on the demo's data: 2 learning
    rates x 2 seeds of a tiny model, each run with its own seed and value, the tables
    aggregated over the seeds and the two groups compared; one more value plans only its
    own two runs. (Last in this file: it replaces the demo's tables and figures.)"""
    source, workdir, _ = demo
    study_file = source / "config/studies/tiny.yaml"
    study = yaml.safe_load(study_file.read_text())
    proc = snakemake(workdir, "all", "--configfile", str(study_file), snakefile=source / "Snakefile",
                     timeout_s=1800)
    base = study["study"]["sets"][0]["base"][0]
    groups = [f"{base}__lr={lr}" for lr in ("0.001", "0.003")]
    for group in groups:
        for seed in (0, 1):
            run = workdir / "results/runs" / f"{group}__seed={seed}"
            assert json.loads((run / "status.json").read_text())["status"] == "complete", run
            settings = yaml.safe_load((run / "settings.yaml").read_text())
            assert settings["seed"] == seed and f"lr={settings['lr']:g}" in group
            assert (run / "final/best_weights.pt").stat().st_size > 0
    # replicates differ (their seeds), so the aggregate has a spread
    finals = {seed: (workdir / f"results/runs/{groups[0]}__seed={seed}/final/weights.pt").read_bytes()
              for seed in (0, 1)}
    assert finals[0] != finals[1]
    tables = workdir / "results/tables"
    replicates = read_csv(tables / "replicates.csv")
    assert sorted(r["group"] for r in replicates) == groups, replicates
    assert all(int(r["n"]) == 2 for r in replicates), replicates
    comparison = read_csv(tables / "comparison.csv")
    assert {(r["a"], r["b"]) for r in comparison} == {tuple(groups)}, comparison
    curves = (workdir / "results/figures/validation_vs_steps.svg").read_text()
    assert all(f"{group} (2 runs, min–max)" in curves for group in groups)  # replicate bands

    more = copy.deepcopy(study)
    more["study"]["sets"][0]["grid"]["train.lr"].append(0.01)
    (tmp_path / "more.yaml").write_text(yaml.safe_dump(more))
    proc = snakemake(workdir, "all", "-n", "--configfile", str(tmp_path / "more.yaml"),
                     snakefile=source / "Snakefile")
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    assert jobs["train_model"] == "2", proc.stdout[-3000:]
    assert f"{base}__lr=0.01__seed=0" in proc.stdout and f"{base}__lr=0.01__seed=1" in proc.stdout
