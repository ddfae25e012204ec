"""Structure-blind baselines: each rule on hand-built pairs whose answer is known."""
import json

import numpy as np
import pytest
import torch

from equivox.baselines import (SlabLogistic, compute_baselines, face_slab, margin_over_best, predictions,
                               rule_scores, slab_features)
from equivox.task import FACES, OPPOSITE

L, C = 7, 2


def empty_pairs(n=1):
    return torch.zeros(n, 2, C, L, L, L)


def layer(face: int, depth: int = 0) -> tuple:
    """Index of voxel layer ``depth`` (0 = outermost) on ``face`` of a (C, L, L, L) image."""
    index = [slice(None)] * 4
    index[1 + face // 2] = L - 1 - depth if face % 2 == 0 else depth
    return tuple(index)


def test_face_slabs_are_the_outer_layers_of_each_face():
    image = torch.arange(C * L ** 3, dtype=torch.float32).reshape(C, L, L, L)
    for face, direction in enumerate(FACES):
        slab = face_slab(image, face, 2)
        assert slab.shape == (C, 2, L, L)
        torch.testing.assert_close(slab[:, 0], image[layer(face, 0)])
        torch.testing.assert_close(slab[:, 1], image[layer(face, 1)])
        # the outermost layer is the one furthest along the face's direction
        axis = int(np.flatnonzero(direction)[0])
        coordinate = torch.arange(L, dtype=torch.float32).view([-1 if a == axis else 1 for a in range(3)])
        position = coordinate.expand(L, L, L)
        assert (position[layer(face, 0)[1:]] * direction[axis]).min() == max(
            (position * direction[axis]).flatten())


@pytest.mark.parametrize("face", range(6))
def test_seam_rule_finds_the_face_whose_boundary_layers_match(face):
    pairs = empty_pairs()
    rng = torch.Generator().manual_seed(face)
    pattern = torch.rand(C, L, L, generator=rng)
    pairs[0, 0][layer(face)] = pattern                    # view A's layer on the face ...
    pairs[0, 1][layer(OPPOSITE[face])] = pattern          # ... meets B's layer looking back
    other = (face + 2) % 6                                # a decoy with different content
    pairs[0, 0][layer(other)] = torch.rand(C, L, L, generator=rng)
    assert rule_scores(pairs)["seam"].argmax(1).item() == face


@pytest.mark.parametrize("face", range(6))
def test_single_view_rules_find_the_dense_side(face):
    pairs = empty_pairs()
    pairs[0, 0][layer(face, 2)] = 1.0                     # A dense toward B, 3rd layer in
    pairs[0, 1][layer(OPPOSITE[face], 1)] = 1.0           # B dense toward A
    pairs[0, 0][:, L // 2, L // 2, L // 2] = 50.0         # the centre is in no slab: ignored
    scores = rule_scores(pairs)
    assert scores["view_a"].argmax(1).item() == face
    assert scores["view_b"].argmax(1).item() == face
    assert scores["seam"].abs().sum() == 0                 # nothing in the outermost layers


def synthetic_pairs(n, rng):
    """Pairs where B is dense toward A (the label) and the rest is noise."""
    labels = rng.integers(6, size=n)
    pairs = torch.rand(n, 2, C, L, L, L, generator=torch.Generator().manual_seed(int(rng.integers(1e9))))
    for i, face in enumerate(labels):
        pairs[i, 1][layer(OPPOSITE[face], 1)] += 0.5   # inside the slab, not on the seam
    return pairs, torch.as_tensor(labels)


def test_slab_logistic_learns_a_density_cue_and_not_noise():
    rng = np.random.default_rng(0)
    x, y = synthetic_pairs(600, rng)
    features = slab_features(x)
    assert features.shape == (600, 12 * C + 6)
    model = SlabLogistic().fit(features, y)
    x_test, y_test = synthetic_pairs(300, rng)
    assert (model.scores(slab_features(x_test)).argmax(1) == y_test).float().mean() > 0.9
    # labels unrelated to the images: held-out accuracy stays near chance
    noise = SlabLogistic().fit(features, torch.as_tensor(rng.integers(6, size=600)))
    accuracy = (noise.scores(slab_features(x_test)).argmax(1) == y_test).float().mean()
    assert accuracy < 0.3


def write_views(path, pairs, labels):
    import h5py
    with h5py.File(path, "w") as h5:
        h5["images"] = pairs.numpy().astype(np.float16)
        h5["labels"] = labels.numpy().astype(np.int64)


def test_compute_baselines_chooses_on_validation_and_pairs_the_margin(tmp_path):
    rng = np.random.default_rng(1)
    for split in ("val", "test"):
        write_views(tmp_path / f"{split}.h5", *synthetic_pairs(120, rng))
    record = compute_baselines({"val": tmp_path / "val.h5", "test": tmp_path / "test.h5"},
                               (slab_features(synthetic_pairs(400, rng)[0]), torch.as_tensor(rng.integers(6, size=400))),
                               confidence=0.95)
    json.dumps(record)  # written as JSON by the rule
    rows = {r["baseline"]: r for r in record["sets"]["val"]["rows"]}
    assert set(rows) == {"chance", "seam", "view_a", "view_b", "slab_logistic"}
    assert rows["chance"]["accuracy"] == pytest.approx(1 / 6)
    assert rows["view_b"]["accuracy"] > 0.9 and record["best"] == "view_b"
    assert rows["view_b"]["accuracy_ci_low"] < rows["view_b"]["accuracy"] <= rows["view_b"]["accuracy_ci_high"]
    labels = record["sets"]["test"]["labels"]
    baseline = np.asarray(record["sets"]["test"]["predicted"]["view_b"])
    # a model right wherever the baseline is, and on 30 more pairs: margin 30/100 above 0
    predicted = np.where(baseline[:100] == labels[:100], baseline[:100], labels[:100])
    wrong = np.flatnonzero(baseline[:100] != labels[:100])
    test = {"arch": "m", "views": "test.h5", "n_examples": 100, "confidence": 0.95,
            "labels": labels[:100], "predicted": predicted.tolist()}
    margin = margin_over_best(test, record)
    assert margin["margin"] == pytest.approx(len(wrong) / 100)
    # the same model as the baseline: margin exactly 0, not "beats"
    same = margin_over_best({**test, "predicted": baseline[:100].tolist()}, record)
    assert same["margin"] == 0 and not same["beats_baseline"]
    with pytest.raises(ValueError, match="other test pairs"):
        margin_over_best({**test, "labels": [(v + 1) % 6 for v in labels[:100]]}, record)


def test_predictions_cover_every_rule_in_order():
    rng = np.random.default_rng(2)
    x, y = synthetic_pairs(10, rng)
    out = predictions([x[:4], x[4:]])
    assert set(out) == {"seam", "view_a", "view_b"} and all(len(v) == 10 for v in out.values())
    np.testing.assert_array_equal(out["view_b"], y.numpy())
