"""Test evaluation of a run's final and best-validation weights, per pair (rule evaluate_test)."""
import json

import numpy as np
import pytest
import torch

from equivox.evaluate import evaluate_test
from equivox.models import build_model
from equivox.run_state import weights_of
from equivox.stats import EXAMPLE_ARRAYS, read_examples
from equivox.views import ViewPairSampler, write_view_set
from tests.defaults import VIEW_PARAMS

PLAIN = {"family": "plain_cnn", "layout": "arch_3", "width": 2, "repeats": 0, "head_channels": [8]}
SETTINGS = dict(n_examples=None, batch_size=4, confidence=0.95, device="cpu")


def save_weights(path, arch, seed):
    torch.manual_seed(seed)
    model = build_model(arch, PLAIN).eval()
    torch.save({"model": weights_of(model), "arch": arch, "spec": PLAIN, "head": "mlp", "in_channels": 4}, path)
    return path


@pytest.fixture(scope="module")
def test_views(small_db, tmp_path_factory):
    path = tmp_path_factory.mktemp("views") / "test.h5"
    write_view_set(path, ViewPairSampler(small_db, "test", VIEW_PARAMS, seed=0), 6, progress=False)
    return path


def test_final_and_best_weights_are_evaluated_per_pair(test_views, tmp_path):
    from scripts.evaluate_test import main

    final = save_weights(tmp_path / "weights.pt", "plain", seed=0)
    best = save_weights(tmp_path / "best_weights.pt", "plain", seed=1)
    result, examples = tmp_path / "plain.json", tmp_path / "plain.examples.npz"
    main(final, best, test_views, result, examples, threads=1, **SETTINGS)
    record, arrays = json.loads(result.read_text()), read_examples(examples)
    assert set(arrays) == set(EXAMPLE_ARRAYS)
    for name in ("final", "best"):
        test = record if name == "final" else record["best"]
        loss, correct = arrays[f"loss_{name}"], arrays[f"correct_{name}"]
        assert loss.dtype == np.float32 and correct.dtype == np.bool_ and loss.shape == correct.shape == (6,)
        assert test["n_examples"] == 6 and test["correct"] == int(correct.sum())
        assert test["accuracy"] == pytest.approx(correct.mean())
        assert test["loss"] == pytest.approx(float(loss.astype(np.float64).mean()), rel=1e-6)
        assert correct.tolist() == [p == t for p, t in zip(test["predicted"], test["labels"])]
    assert record["weights"].endswith("weights.pt") and record["best"]["weights"].endswith("best_weights.pt")
    assert "best" not in record["best"]
    # different weights, different per-pair losses: the two evaluations are not one
    assert not np.array_equal(arrays["loss_final"], arrays["loss_best"])
    # the fields other code reads stay at the top level, for the final weights
    for key in ("arch", "loss", "loss_ci_low", "loss_ci_high", "accuracy", "accuracy_ci_low",
                "accuracy_ci_high", "correct", "confidence", "chance_accuracy", "predicted", "labels"):
        assert key in record and key in record["best"]


def test_best_weights_of_another_run_are_refused(test_views, tmp_path):
    final = save_weights(tmp_path / "weights.pt", "plain", seed=0)
    other = save_weights(tmp_path / "other.pt", "other", seed=0)
    with pytest.raises(ValueError, match="not the run"):
        evaluate_test(final, other, test_views, **SETTINGS)
