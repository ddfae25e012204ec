"""Dead-unit counting on models whose dead and live units are forced by their weights."""
import numpy as np
import pytest
import torch

from equivox.dead_units import hist_columns, layer_table, measure_activity
from equivox.models import build_model

PLAIN = {"family": "plain_cnn", "layout": "arch_3", "width": 2, "repeats": 0, "head_channels": [8]}
ESCNN = {"family": "escnn_cnn", "layout": "arch_3", "width": 1, "repeats": 0, "head_channels": [8]}


def batches(n_batches=2, batch=3, seed=0):
    """Non-negative random view pairs, like voxel occupancies: [(B, 2, 4, 21, 21, 21), labels]."""
    generator = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, 2, 4, 21, 21, 21, generator=generator), torch.zeros(batch, dtype=torch.int64))
            for _ in range(n_batches)]


def test_relu_channel_forced_negative_is_dead_and_the_rest_of_its_layer_is_not():
    torch.manual_seed(0)
    model = build_model("plain", PLAIN)
    norm = model.encoder[1]  # the first conv's batch norm: its output is the ReLU's input
    with torch.no_grad():
        norm.weight.zero_()           # pre-activation = beta, whatever the input
        norm.bias.copy_(torch.tensor([-1.0, 1.0]))
    layers = measure_activity(model, batches())
    first = layers[0]
    assert (first.name, first.kind) == ("encoder.2", "pointwise")
    assert first.inputs == 2 * 3 * 2  # views, not pairs: both views pass the encoder
    assert first.positions == 19 ** 3
    np.testing.assert_array_equal(first.fraction_active, [0.0, 1.0])
    table = layer_table(layers, tau=0.1)
    row = table.iloc[0]
    assert (row["units"], row["dead"], row["dormant"]) == (2, 1, 1)
    assert row[hist_columns()[0]] == 1 and row[hist_columns()[-1]] == 1
    assert list(table["layer"]) == ["encoder.2", "encoder.5", "encoder.8", "encoder.11", "encoder.13",
                                    "head.1"]
    assert (table[hist_columns()].sum(axis=1) == table["units"]).all()


def test_fraction_active_equals_a_direct_count():
    torch.manual_seed(1)
    model = build_model("plain", PLAIN).eval()
    data = batches()
    layers = {layer.name: layer for layer in measure_activity(model, data)}
    views = torch.cat([images.flatten(0, 1) for images, _ in data])  # (2 * pairs, 4, 21, 21, 21)
    with torch.no_grad():
        second = torch.nn.Sequential(*list(model.encoder)[:6])(views)  # through the second ReLU
    expected = (second > 0).double().mean(dim=(0, 2, 3, 4)).numpy()
    np.testing.assert_allclose(layers["encoder.5"].fraction_active, expected)
    magnitude = second.abs().double().mean(dim=(0, 2, 3, 4)).numpy()
    np.testing.assert_allclose(layers["encoder.5"].dormancy(), magnitude / magnitude.mean(), rtol=1e-6)


@pytest.fixture(scope="module")
def escnn_model():
    torch.manual_seed(0)
    return build_model("tiny_escnn", ESCNN)


def test_escnn_fourier_field_forced_negative_is_dead(escnn_model):
    last_conv = escnn_model.encoder.layers[-2]  # 3^3 -> 1^3, with bias; 4 fields
    with torch.no_grad():
        last_conv.weights.zero_()  # the field is its bias: constant on the grid
        last_conv.bias.copy_(torch.tensor([-1.0, 1.0, 1.0, 1.0]))
    layers = measure_activity(escnn_model, batches(n_batches=1, batch=2))
    kinds = [(layer.kind, len(layer.active), layer.positions) for layer in layers]
    # fields of each Fourier nonlinearity, read at 96 grid points x voxels; then the MLP head
    assert kinds == [("fourier", 1, 96 * 19 ** 3), ("fourier", 2, 96 * 9 ** 3), ("fourier", 2, 96 * 7 ** 3),
                     ("fourier", 4, 96 * 3 ** 3), ("fourier", 4, 96), ("pointwise", 8, 1)]
    np.testing.assert_array_equal(layers[4].fraction_active, [0.0, 1.0, 1.0, 1.0])
    table = layer_table(layers, tau=0.1)
    assert table.loc[4, "dead"] == 1
    assert (table.loc[:3, "mean_fraction_active"] > 0).all()


def test_escnn_hooks_are_removed_after_measuring(escnn_model):
    measure_activity(escnn_model, batches(n_batches=1, batch=1))
    hooked = [m for m in escnn_model.modules() if m._forward_hooks or m._forward_pre_hooks]
    assert hooked == []
