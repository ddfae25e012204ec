"""What a workflow run shows on the console: rule scripts log equivox's INFO lines but
third-party libraries only from WARNING."""
import logging

from equivox.logs import run_logged


def _figure_as_pdf(path):
    """A matplotlib PDF with embedded TrueType fonts, as the paper figures have: fontTools
    subsets them and logs every subset at INFO."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"pdf.fonttype": 42}):
        fig, ax = plt.subplots()
        ax.set_title("validation accuracy")
        fig.savefig(path)
        plt.close(fig)
    logging.getLogger("equivox.test").info("figure written")
    logging.getLogger("fontTools.subset").warning("a third-party warning")


def test_third_party_info_lines_stay_out_of_the_log(tmp_path, capsys):
    log_path = tmp_path / "plot.log"
    run_logged(_figure_as_pdf, log_path, path=tmp_path / "figure.pdf")
    text = log_path.read_text()
    assert "INFO equivox.test: figure written" in text
    assert "WARNING fontTools.subset: a third-party warning" in text
    assert "INFO fontTools" not in text and "INFO fontTools" not in capsys.readouterr().err


# --------------------------------------------------------------------------- training progress

def write_run(run_dir, status, windows, max_steps=60, message=""):
    """A run directory as the trainer leaves it: settings.yaml, status.json and a
    metrics.csv with a validation row at step 0 and ``windows`` as (step, loss, acc, val
    acc or None) logging windows of 10 s each."""
    import yaml

    from equivox.run_record import METRIC_COLUMNS, append_metrics_row, set_status

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "settings.yaml").write_text(yaml.safe_dump({"max_steps": max_steps, "max_compute_h": None}))
    set_status(run_dir, status, message, step=windows[-1][0] if windows else 0)

    def row(kind, step, **values):
        append_metrics_row(run_dir / "metrics.csv", {**dict.fromkeys(METRIC_COLUMNS, ""), "kind": kind,
                                                     "step": step, "compute_s": f"{step:.3f}", **values})
    if not (run_dir / "metrics.csv").exists():
        row("val", 0, val_loss="1.79", val_accuracy="0.170")
    for step, loss, acc, val in windows:
        row("train", step, train_loss=str(loss), train_accuracy=str(acc))
        if val is not None:
            row("val", step, val_loss="1.5", val_accuracy=str(val))


def test_a_training_job_prints_one_line_per_logging_window(tmp_path):
    """What the Snakemake console shows while a model trains (the supervisor polls)."""
    import io

    from equivox.status import ProgressFollower

    run = tmp_path / "runs" / "escnn_resnet"
    write_run(run, "running", [(10, 1.7, 0.2, None), (20, 1.6, 0.3, None)])
    console = io.StringIO()
    follower = ProgressFollower(run, console)
    follower.poll()                    # the newest window only: the earlier one is old news
    follower.poll()                    # nothing new: nothing printed
    write_run(run, "running", [(30, 1.5, 0.35, 0.4), (40, 1.25, 0.5, None)])
    follower.poll()
    lines = console.getvalue().splitlines()
    assert lines == [
        "equivox train escnn_resnet: step 20/60 (33%), loss 1.600, acc 0.300, val acc 0.170 at step 0, ~40 s left",
        "equivox train escnn_resnet: step 30/60 (50%), loss 1.500, acc 0.350, val acc 0.400 at step 30, ~30 s left",
        "equivox train escnn_resnet: step 40/60 (67%), loss 1.250, acc 0.500, val acc 0.400 at step 30, ~20 s left",
    ]


def test_the_status_command_lists_every_run(tmp_path):
    import subprocess
    import sys

    from tests.workflow_helpers import REPO

    write_run(tmp_path / "runs" / "plain_cnn", "complete", [(60, 1.1, 0.55, 0.5)])
    write_run(tmp_path / "runs" / "escnn_cnn", "oom", [(10, 1.7, 0.2, None)],
              message="MemoryError: cannot allocate")
    proc = subprocess.run([sys.executable, "-m", "equivox.status", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, check=True)
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["escnn_cnn", "oom", "step", "10/60", "(17%),", "loss", "1.700,", "acc", "0.200,",
                                "val", "acc", "0.170", "at", "step", "0", "MemoryError:", "cannot", "allocate"]
    assert lines[1].startswith("plain_cnn") and "complete" in lines[1] and "left" not in lines[1]
    empty = subprocess.run([sys.executable, "-m", "equivox.status", str(tmp_path / "none")], cwd=REPO,
                           capture_output=True, text=True, check=True)
    assert empty.stdout.startswith("no training runs under")


# --------------------------------------------------------------------------- end-of-run summary

def write_test_record(path, arch, accuracy, low, high):
    """An evaluate_test record (results/analysis/test/<arch>.json), the keys the summary reads."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"arch": arch, "n_examples": 1000, "confidence": 0.95, "accuracy": accuracy,
                                "accuracy_ci_low": low, "accuracy_ci_high": high,
                                "chance_accuracy": 1 / 6, "chance_loss": 1.792}))


def failing_snakemake_log(tmp_path):
    """Snakemake's own log of a real run in which one job of two failed."""
    import subprocess
    import sys

    workdir = tmp_path / "failing"
    workdir.mkdir()
    (workdir / "Snakefile").write_text(
        'rule all:\n    input: expand("out/{x}.txt", x=["a", "b"])\n\n'
        'rule make:\n    output: "out/{x}.txt"\n    log: "logs/make/{x}.log"\n'
        '    shell: "if [ {wildcards.x} = b ]; then exit 3; fi; touch {output}"\n')
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--keep-going", "--nocolor"],
                          cwd=workdir, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    return sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))


def test_the_end_of_run_summary(tmp_path):
    """Test accuracy beside chance and the best baseline, every run's status, the failed
    jobs from Snakemake's log, and where the outputs and the report are."""
    import json

    from equivox.summary import REPORT_COMMAND, workflow_summary

    results = tmp_path / "results"
    write_run(results / "runs" / "escnn_resnet", "complete", [(600, 1.0, 0.6, 0.58)], max_steps=600)
    write_run(results / "runs" / "plain_resnet", "error", [(10, 1.7, 0.2, None)], message="RuntimeError: boom")
    write_test_record(results / "analysis" / "test" / "escnn_resnet.json", "escnn_resnet", 0.512, 0.481, 0.543)
    (results / "analysis" / "baselines").mkdir(parents=True)
    rows = [{"baseline": "chance", "accuracy": 1 / 6}, {"baseline": "slab_logistic", "accuracy": 0.401},
            {"baseline": "seam", "accuracy": 0.16}]
    (results / "analysis" / "baselines" / "test.json").write_text(json.dumps(
        {"best": "slab_logistic", "chosen_on": "val", "sets": {"test": {"rows": rows}}}))
    (results / "figures").mkdir()

    text = workflow_summary(results, ["escnn_resnet", "plain_resnet"], failing_snakemake_log(tmp_path),
                            failed=True)
    lines = [line.split() for line in text.splitlines()]
    assert ["escnn_resnet", "0.512", "[0.481,", "0.543]", "(95%", "interval,", "1000", "pairs)"] in lines
    assert ["plain_resnet", "not", "evaluated", "(" + str(results / "analysis/test/plain_resnet.json"),
            "missing)"] in lines
    assert ["chance", "0.167"] in lines
    assert ["best", "baseline", "0.401", "(slab_logistic,", "chosen", "on", "val)"] in lines
    assert any(line[:2] == ["plain_resnet", "error"] and line[-2:] == ["RuntimeError:", "boom"] for line in lines)
    assert ["rule", "make:", "out/b.txt", "(log:", "logs/make/b.log)"] in lines
    assert f"{results / 'figures'}/\n" in text + "\n" and f"{results / 'paper'}/ (not made yet)" in text
    assert REPORT_COMMAND in text
    # a successful run lists no failures; a run before any result still says where things go
    assert "failed" not in workflow_summary(results, ["escnn_resnet"])
    assert workflow_summary(tmp_path / "empty", ["escnn_resnet"]).startswith("equivox: outputs")


def test_time_left_under_a_compute_budget_counts_model_time():
    """The budget counts model time (compute less data waits): with half of the compute
    spent waiting for data, 1 of 2 model hours used leaves 2 compute hours, not 1."""
    from equivox.status import time_left

    assert time_left(100, 7200, {"max_compute_h": 2}, model_s=3600) == 7200
    assert time_left(100, 3600, {"max_compute_h": 2}) == 3600       # no data waits recorded
    assert time_left(100, 3600, {"max_steps": 200, "max_compute_h": 2}, model_s=3600) == 3600
