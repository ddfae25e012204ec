"""The memory and batch size probe (equivox/memory_probe.py, rules memory_probe and memory_table)."""
import csv
import json
import math

import numpy as np
import pandas as pd
import pytest

from equivox.config import load_architectures
from equivox.memory_probe import (COLUMNS, GIB, MIB, build, build_memory_table, fit_linear, largest_batch,
                                  probe_memory, random_batch, train_step)
from equivox.tables import write_table
from tests.workflow_helpers import REPO, snakemake

PLAIN = "plain_arch_3_width_2_repeats_1"


@pytest.fixture(scope="module")
def plain_spec():
    return load_architectures(REPO / "config/architectures/demo.yaml")[PLAIN]


def test_fit_is_exact_on_linear_data():
    batches = [1, 2, 4, 8, 32]
    memory = [3 * GIB + 40 * MIB * b for b in batches]
    fit = fit_linear(batches, memory)
    assert fit["intercept_bytes"] == pytest.approx(3 * GIB, rel=1e-9)
    assert fit["slope_bytes_per_example"] == pytest.approx(40 * MIB, rel=1e-9)
    assert fit["r2"] == pytest.approx(1.0, abs=1e-12)
    assert fit["n_points"] == 5


def test_fit_of_noisy_data_is_least_squares_and_r2_below_one():
    batches, memory = [1, 2, 3], [1.0, 3.0, 2.0]
    fit = fit_linear(batches, memory)
    # slope = cov / var = 0.5, intercept = mean(y) - slope * mean(x) = 2 - 1 = 1
    assert fit["slope_bytes_per_example"] == pytest.approx(0.5)
    assert fit["intercept_bytes"] == pytest.approx(1.0)
    assert fit["r2"] == pytest.approx(1 - 1.5 / 2.0)  # residuals (-.5, 1, -.5): SS 1.5; total SS 2


def test_two_points_give_a_slope_but_no_r2_and_one_gives_neither():
    fit = fit_linear([2, 4], [10.0, 14.0])
    assert fit["slope_bytes_per_example"] == pytest.approx(2.0) and math.isnan(fit["r2"])
    single = fit_linear([4, 4], [10.0, 12.0])
    assert math.isnan(single["slope_bytes_per_example"]) and single["intercept_bytes"] == 11.0
    assert largest_batch(single, 80, 2) is None
    none = fit_linear([], [])  # every batch size ran out of memory
    assert none["n_points"] == 0 and math.isnan(none["slope_bytes_per_example"])
    assert largest_batch(none, 80, 2) is None
    assert largest_batch({"intercept_bytes": None, "slope_bytes_per_example": None}, 80, 2) is None


def test_largest_batch_keeps_the_margin_free():
    fit = {"intercept_bytes": 1 * GIB, "slope_bytes_per_example": GIB / 100}
    # (80 - 2 - 1) GiB / (GiB / 100) = 7700 examples
    assert largest_batch(fit, gpu_memory_gb=80, margin_gb=2) == 7700
    assert largest_batch(fit, gpu_memory_gb=80, margin_gb=0) == 7900
    n = largest_batch({"intercept_bytes": 1.5 * GIB, "slope_bytes_per_example": 0.3 * GIB}, 80, 2.5)
    used = lambda b: 1.5 * GIB + 0.3 * GIB * b  # noqa: E731
    assert used(n) <= 77.5 * GIB < used(n + 1)
    # nothing fits when the fixed part alone is over; no answer for a flat or falling trend
    assert largest_batch({"intercept_bytes": 79 * GIB, "slope_bytes_per_example": MIB}, 80, 2) == 0
    assert largest_batch({"intercept_bytes": GIB, "slope_bytes_per_example": 0.0}, 80, 2) is None
    assert largest_batch({"intercept_bytes": GIB, "slope_bytes_per_example": -1.0}, 80, 2) is None


@pytest.mark.slow
def test_cpu_probe_of_a_demo_model_grows_with_batch(plain_spec):
    table, summary = probe_memory(PLAIN, plain_spec, batch_sizes=[16, 1], in_channels=4, length=21,
                                  device="cpu", gpu_memory_gb=80, margin_gb=2, threads=1)
    assert list(table.columns) == COLUMNS
    assert table["batch_size"].tolist() == [1, 16]
    assert (table["measured_on"] == "cpu RSS").all() and (table["device"] == "cpu").all()
    assert not table["oom"].any() and table["cuda_allocated_peak_bytes"].isna().all()
    assert (table["rss_peak_bytes"] >= table["rss_baseline_bytes"]).all()
    assert (table["memory_bytes"] == table["model_bytes"] + table["rss_step_bytes"]).all()
    # 15 more example pairs: at least their inputs (15 x 2 x 4 x 21^3 float32, 4.4 MiB) more
    grown = table["memory_bytes"].iloc[1] - table["memory_bytes"].iloc[0]
    assert grown > 15 * 2 * 4 * 21 ** 3 * 4
    assert summary["fit"]["slope_bytes_per_example"] > 0
    assert summary["largest_batch"] == largest_batch(summary["fit"], 80, 2) > 16
    assert summary["parameters"] > 0 and summary["measured_on"] == "cpu RSS"
    assert summary["fit"]["r2"] is None  # two points: no R^2, written as null
    json.dumps(summary, allow_nan=False)  # what the rule writes: standard JSON


def optimizer_state_bytes(optimizer) -> int:
    """Bytes of the optimizer's state tensors (Adam's two moments, SGD's momentum buffer)."""
    import torch

    return sum(value.numel() * value.element_size() for state in optimizer.state.values()
               for value in state.values() if isinstance(value, torch.Tensor))


@pytest.mark.parametrize("optimizer, kind, states", [
    (None, "Adam", 2),  # two moments per weight
    ({"optimizer": "adamw", "weight_decay": 0.01, "momentum": 0.9, "nesterov": False}, "AdamW", 2),
    ({"optimizer": "sgd", "weight_decay": 0.0, "momentum": 0.9, "nesterov": True}, "SGD", 1),
    ({"optimizer": "sgd", "weight_decay": 0.0, "momentum": 0.0, "nesterov": False}, "SGD", 0),
])
def test_the_probed_step_uses_the_runs_optimizer_and_its_state(plain_spec, optimizer, kind, states):
    """The step's memory includes the optimizer's state, which differs by optimizer: the
    probe builds the run's (Adam holds two tensors per weight, SGD with momentum one)."""
    model, built = build(PLAIN, plain_spec, 4, "mlp", "cpu", optimizer)
    assert type(built).__name__ == kind
    inputs, labels = random_batch(2, 4, 21, "cpu")
    train_step(model, built, inputs, labels)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    # Adam's step counters are one scalar per weight tensor: at most a few hundred bytes
    assert states * weights <= optimizer_state_bytes(built) <= states * weights + 8 * len(built.state)


def test_cuda_rows_measure_after_a_warm_up_and_stop_at_the_first_oom(plain_spec, monkeypatch):
    """The CUDA path's bookkeeping, with torch.cuda's memory calls stood in for on the CPU:
    per size a warm-up then a measured step between a reset and the readings; the size
    that runs out of memory is a row with oom, larger ones are not tried."""
    import torch

    import equivox.memory_probe as memory_probe

    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 1000 + 10 * batch[0])
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: 2048 + 10 * batch[0])
    batch = [0]

    def step(model, optimizer, inputs, labels, amp="none"):
        batch[0] = len(labels)
        calls.append(f"step {len(labels)}")
        if len(labels) >= 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (stand-in)")

    monkeypatch.setattr(memory_probe, "train_step", step)
    rows = memory_probe.cuda_rows(PLAIN, plain_spec, [16, 2, 8, 1], 4, 21, "mlp", "none", "cpu")
    assert [(r["batch_size"], r["oom"]) for r in rows] == [(1, False), (2, False), (8, True)]
    assert [r["memory_bytes"] for r in rows[:2]] == [1010, 1020]
    assert [r["cuda_reserved_peak_bytes"] for r in rows[:2]] == [2058, 2068]
    assert "memory_bytes" not in rows[2] and "step 16" not in calls
    first = calls[:calls.index("step 2")]  # warm-up, then reset, then the measured step
    assert first.index("step 1") < first.index("reset") < len(first) - 1 - first[::-1].index("step 1")
    fit = fit_linear([r["batch_size"] for r in rows[:2]], [r["memory_bytes"] for r in rows[:2]])
    assert fit["slope_bytes_per_example"] == pytest.approx(10)


def summary(arch, family, largest, slope_mib, measured_on="cpu RSS", gpu=""):
    return {"arch": arch, "family": family, "parameters": 52978, "device": measured_on.split()[0],
            "gpu_model": gpu, "measured_on": measured_on, "batch_sizes": [1, 2, 4, 8],
            "oom_batch_sizes": [8] if gpu else [],
            "fit": {"intercept_bytes": 0.25 * GIB, "slope_bytes_per_example": slope_mib * MIB,
                    "r2": 0.99871, "n_points": 3},
            "gpu_memory_gb": 80, "margin_gb": 2, "largest_batch": largest,
            "optimizer": {"optimizer": "sgd", "weight_decay": 0.0, "momentum": 0.9, "nesterov": False}
            if arch == "plain" else {"optimizer": "adam", "weight_decay": 0.0, "momentum": 0.9, "nesterov": False}}


def test_memory_table_is_written_in_every_format(tmp_path):
    paths = []
    for i, record in enumerate([summary("plain", "plain_cnn", 25707, 3.11),
                                summary("escnn", "escnn_cnn", None, 0.0, "cuda allocated", "NVIDIA H200")]):
        if record["arch"] == "escnn":
            record["fit"]["r2"] = None
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(record))
    numbers, shown = build_memory_table(paths)
    out = {ext: tmp_path / f"memory.{ext}" for ext in ("csv", "md", "tex", "html")}
    write_table(numbers, shown, out["csv"], out["md"], out["tex"], out["html"])
    rows = list(csv.DictReader(open(out["csv"])))
    assert [r["model"] for r in rows] == ["plain", "escnn"]
    assert [r["optimizer"] for r in rows] == ["sgd+momentum", "adam"]
    assert rows[0]["largest_batch"] == "25707" and rows[1]["largest_batch"] == ""
    assert float(rows[0]["slope_MiB_per_example"]) == pytest.approx(3.11)
    assert float(rows[0]["intercept_GiB"]) == pytest.approx(0.25)
    assert rows[1]["batch_sizes"] == "1 2 4" and rows[1]["oom_batch_sizes"] == "8"
    md = out["md"].read_text()
    assert "cpu RSS" in md and "cuda allocated (NVIDIA H200)" in md and "25,707" in md
    assert "80 − 2" in md and "0.9987" in md and rows[1]["r2"] == ""
    assert "\\toprule" in out["tex"].read_text() and "<table" in out["html"].read_text()


@pytest.mark.workflow
def test_memory_rules_run_on_the_demo_config(tmp_path):
    """Both rules by Snakemake, on a study of the plain demo model over two optimizers and
    two seeds: one probe per setting (replicate 0), each with its run's optimizer."""
    adam, sgd = (f"{PLAIN}__optimizer={name}" for name in ("adam", "sgd"))
    config = {"study": {"name": "optimizers", "replicates": 2,
                        "sets": [{"base": [PLAIN], "grid": {"train.optimizer": ["adam", "sgd"]}}]},
              "train": {"max_steps_per_model": None}, "analysis": {
                  "compare": [], "memory_probe": {"batch_sizes": [1, 4], "device": "cpu"}}}
    snakemake(tmp_path, "results/tables/memory.html", config=config, timeout_s=300)
    probed = sorted(path.stem for path in (tmp_path / "results/analysis/memory").glob("*.json"))
    assert probed == [f"{adam}__seed=0", f"{sgd}__seed=0"]
    rows = pd.read_csv(tmp_path / f"results/analysis/memory/{adam}__seed=0.tsv", sep="\t")
    assert rows["batch_size"].tolist() == [1, 4] and (rows["measured_on"] == "cpu RSS").all()
    record = json.loads((tmp_path / f"results/analysis/memory/{adam}__seed=0.json").read_text())
    assert record["gpu_memory_gb"] == 80 and record["margin_gb"] == 2 and record["largest_batch"] > 4
    assert record["input_shape"] == [None, 2, 4, 21, 21, 21]
    assert record["optimizer"]["optimizer"] == "adam"
    sgd_record = json.loads((tmp_path / f"results/analysis/memory/{sgd}__seed=0.json").read_text())
    assert sgd_record["optimizer"] == {"optimizer": "sgd", "weight_decay": 0.0, "momentum": 0.9, "nesterov": False}
    table = pd.read_csv(tmp_path / "results/tables/memory.csv")
    assert table["model"].tolist() == [f"{adam}__seed=0", f"{sgd}__seed=0"]
    assert table["optimizer"].tolist() == ["adam", "sgd+momentum"]
    assert table["largest_batch"].iloc[0] == record["largest_batch"]
    for ext in ("md", "tex", "html"):
        assert (tmp_path / f"results/tables/memory.{ext}").stat().st_size > 0
    assert np.isfinite(table["slope_MiB_per_example"].iloc[0])
