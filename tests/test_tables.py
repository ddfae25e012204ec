"""Paper tables of replicates and paired comparisons, and the best-validation weights in the results table."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from equivox.stats import holm_adjust, paired_comparison
from equivox.tables import (Run, build_table, comparison_pairs, comparison_table, replicates_table,
                            results_table, shown_comparison, write_table)

LABELS = [0, 1, 2, 3, 4, 5, 0, 1]


def eval_record(arch, accuracy, loss, best=None):
    record = {"arch": arch, "accuracy": accuracy, "accuracy_ci_low": accuracy - 0.1,
              "accuracy_ci_high": accuracy + 0.1, "loss": loss, "loss_ci_low": loss - 0.2,
              "loss_ci_high": loss + 0.2, "n_examples": len(LABELS), "confidence": 0.95,
              "views": "test.h5", "labels": LABELS, "predicted": LABELS[:4] + [5, 5, 5, 5]}
    if best is not None:
        record["best"] = eval_record(arch, *best)
    return record


def examples_of(correct_final, loss_final, correct_best, loss_best):
    return {"correct_final": np.asarray(correct_final, bool), "loss_final": np.asarray(loss_final, np.float32),
            "correct_best": np.asarray(correct_best, bool), "loss_best": np.asarray(loss_best, np.float32)}


def test_replicates_are_summarised_per_group_with_a_t_interval():
    tests = [eval_record("cnn_s0", 0.60, 1.2, best=(0.62, 1.1)),
             eval_record("twin", 0.50, 1.4, best=(0.50, 1.4)),
             eval_record("cnn_s1", 0.64, 1.0, best=(0.66, 1.0)),
             eval_record("cnn_s2", 0.62, 1.1, best=(0.64, 1.05))]
    groups = {"cnn_s0": "cnn", "cnn_s1": "cnn", "cnn_s2": "cnn", "twin": "twin"}
    table = replicates_table(tests, groups, 0.95)
    assert list(table["group"]) == ["cnn", "twin"]  # order of the first run
    cnn, twin = table.iloc[0], table.iloc[1]
    assert cnn["n"] == 3 and cnn["runs"] == "cnn_s0, cnn_s1, cnn_s2"
    # mean 0.62, s = 0.02, t_{0.975, 2} = 4.302653: half width 0.049683
    assert cnn["final_test_accuracy"] == pytest.approx(0.62)
    assert cnn["final_test_accuracy_ci_high"] - 0.62 == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-5)
    assert cnn["final_test_accuracy_sd"] == pytest.approx(0.02)
    assert cnn["best_test_accuracy"] == pytest.approx(0.64)
    assert cnn["best_test_loss"] == pytest.approx((1.1 + 1.0 + 1.05) / 3)
    assert twin["n"] == 1 and twin["final_test_loss"] == 1.4 and math.isnan(twin["final_test_loss_ci_low"])


def test_every_run_its_own_group_without_groups():
    table = replicates_table([eval_record("a", 0.5, 1.5), eval_record("b", 0.6, 1.3)], None, 0.95)
    assert list(table["n"]) == [1, 1] and list(table["group"]) == ["a", "b"]
    assert table["best_test_accuracy"].isna().all()  # records without best weights


def test_comparison_rows_are_the_paired_comparison_of_group_means_per_example():
    rng = np.random.default_rng(0)
    n = 40
    runs = {name: examples_of(rng.random(n) < p, rng.random(n) + shift, rng.random(n) < p, rng.random(n) + shift)
            for name, p, shift in (("twin", 0.4, 0.5), ("cnn_s0", 0.7, 0.0), ("cnn_s1", 0.7, 0.0))}
    groups = {"twin": "twin", "cnn_s0": "cnn", "cnn_s1": "cnn"}
    table = comparison_table(runs, groups, [("twin", "cnn")], confidence=0.95, n_resamples=500, seed=3)
    assert list(table["weights"]) == ["final", "best"] and list(table["a"]) == ["twin", "twin"]
    final = table.iloc[0]
    expected = paired_comparison(runs["twin"]["correct_final"], runs["twin"]["loss_final"],
                                 [runs["cnn_s0"]["correct_final"], runs["cnn_s1"]["correct_final"]],
                                 [runs["cnn_s0"]["loss_final"], runs["cnn_s1"]["loss_final"]],
                                 n_resamples=500, seed=3)
    for key in ("accuracy_diff", "accuracy_diff_ci_low", "accuracy_p", "loss_diff", "loss_diff_ci_high", "loss_p"):
        assert final[key] == pytest.approx(expected[key])
    assert final["replicates_b"] == 2 and final["direction"] == "B minus A"
    assert final["loss_diff"] < 0  # the cnn's losses were drawn 0.5 lower


def test_comparison_p_values_are_holm_adjusted_over_the_pairs_per_weights():
    rng = np.random.default_rng(4)
    n = 60
    runs = {name: examples_of(rng.random(n) < p, rng.random(n) + shift, rng.random(n) < p, rng.random(n))
            for name, p, shift in (("twin", 0.4, 0.3), ("cnn", 0.7, 0.0), ("resnet", 0.5, 0.2))}
    pairs = [("twin", "cnn"), ("twin", "resnet"), ("resnet", "cnn")]
    table = comparison_table(runs, None, pairs, confidence=0.95, n_resamples=300, seed=0)
    for weights in ("final", "best"):
        family = table[table["weights"] == weights]
        assert len(family) == 3
        for metric in ("accuracy", "loss"):
            assert family[f"{metric}_p_holm"].to_numpy() == pytest.approx(holm_adjust(family[f"{metric}_p"]))
            assert (family[f"{metric}_p_holm"] >= family[f"{metric}_p"]).all()
    single = comparison_table(runs, None, pairs[:1], confidence=0.95, n_resamples=300, seed=0)
    assert (single["accuracy_p_holm"] == single["accuracy_p"]).all()
    assert "; " in shown_comparison(table, 0.95)["accuracy p (exact); Holm"].iloc[0]


def test_comparison_names_must_be_groups():
    groups = ["cnn", "twin"]
    assert comparison_pairs([["twin", "cnn"]], groups) == [("twin", "cnn")]
    with pytest.raises(ValueError) as error:
        comparison_pairs([["twin", "cnnn"]], groups)
    for word in ("config analysis.compare", "'cnnn'", "cnn, twin"):
        assert word in str(error.value)
    # a model of the architecture set that train.models leaves out: the pair is skipped
    assert comparison_pairs([["twin", "resnet"], ["twin", "cnn"]], groups, unselected=["resnet"]) == [
        ("twin", "cnn")]


def test_results_table_reports_final_and_best_weights(tmp_path):
    metrics = pd.DataFrame({"kind": ["val"], "step": [10], "val_loss": [1.3], "val_accuracy": [0.5]})
    run = Run("cnn", {"arch": "cnn", "settings": {"spec": {"family": "escnn_cnn"}}, "parameters": 10,
                      "compute_s": 36.0, "steps": 10, "epochs": 0.1}, metrics)
    baselines = {"best": "seam", "sets": {"test": {"labels": LABELS, "predicted": {"seam": [0] * 8}}}}
    table = results_table([run], [eval_record("cnn", 0.5, 1.2, best=(0.625, 1.1))], baselines)
    row = table.iloc[0]
    assert row["test_accuracy"] == 0.5 and row["best_test_accuracy"] == 0.625
    assert row["best_test_loss_ci_low"] == pytest.approx(0.9)


def write_records(tmp_path, names, examples):
    tests, npz = [], []
    for name in names:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(eval_record(name, 0.5, 1.2, best=(0.6, 1.1))))
        tests.append(str(path))
        path = tmp_path / f"{name}.examples.npz"
        np.savez(path, **examples[name])
        npz.append(str(path))
    return tests, npz


@pytest.mark.parametrize("compare", [[["twin", "cnn"]], []])
def test_tables_are_written_from_the_records(tmp_path, compare):
    rng = np.random.default_rng(1)
    examples = {name: examples_of(rng.random(8) < 0.5, rng.random(8), rng.random(8) < 0.5, rng.random(8))
                for name in ("cnn", "twin")}
    tests, npz = write_records(tmp_path, ["cnn", "twin"], examples)
    for name in ("replicates", "comparison"):
        numbers, shown = build_table(name, confidence=0.95, tests=tests, examples=npz,
                                     groups={"cnn": "cnn", "twin": "twin"}, compare=compare,
                                     bootstrap={"n_resamples": 200, "seed": 0})
        paths = [tmp_path / f"{name}.{ext}" for ext in ("csv", "md", "tex", "html")]
        write_table(numbers, shown, *paths)
        assert all(path.stat().st_size > 0 for path in paths)
        assert len(pd.read_csv(paths[0])) == (2 if name == "replicates" else 2 * len(compare))
    if compare:
        assert "accuracy B - A" in paths[1].read_text()


@pytest.mark.parametrize("compare, words", [
    ("twin", ["analysis.compare", "is not of type 'array'"]),
    ([["twin"]], ["analysis.compare.0", "too short"]),
    ([["twin", "cnn", "resnet"]], ["analysis.compare.0", "too long"]),
    ([["twin", 3]], ["analysis.compare.0.1", "not of type 'string'"]),
    ([["cnn", "cnn"]], ["analysis.compare[0]", "'cnn' with itself"]),
])
def test_analysis_compare_must_be_pairs_of_names(compare, words):
    import copy

    import yaml

    from equivox.config import ConfigError, validate_config
    from tests.workflow_helpers import REPO

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    validate_config(copy.deepcopy(config), REPO)  # the demo's pairs pass
    config["analysis"]["compare"] = compare
    with pytest.raises(ConfigError) as error:
        validate_config(config, REPO)
    for word in words:
        assert word in str(error.value), str(error.value)


def test_the_demo_compares_each_escnn_model_with_its_plain_twin():
    import yaml

    from equivox.config import validate_config
    from tests.workflow_helpers import REPO

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    validate_config(config, REPO)
    models = yaml.safe_load((REPO / config["train"]["architectures"]).read_text())
    assert config["analysis"]["bootstrap"] == {"n_resamples": 10000, "seed": 0}
    assert len(config["analysis"]["compare"]) == 2
    for a, b in config["analysis"]["compare"]:
        assert a == f"plain_{b}" and {a, b} <= set(models)
