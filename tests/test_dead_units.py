"""Dead-unit counting on models and layers whose dead and live units are forced.

Every nonlinearity the architecture schema allows is covered: the seven Fourier
functions (read from the packaged architecture schema), the sigmoid gates of
the alpha/dense blocks, and the ReLU of the plain twins and the MLP head.
"""
import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

from equivox.config import default_config, load_schema
from equivox.dead_units import (FOURIER_RESPONSES, ActivityRecorder, hist_columns, layer_table,
                                measure_activity)
from equivox.layer_names import layer_names
from equivox.models import build_model, fields

PLAIN = {"family": "plain_cnn", "layout": "arch_3", "width": 2, "repeats": 0, "head_channels": [8]}
ESCNN = {"family": "escnn_cnn", "layout": "arch_3", "width": 1, "repeats": 0, "head_channels": [8]}
SCHEMA = load_schema("architectures")
OPEN_FRACTION = default_config()["analysis"]["dead_units"]["open_fraction"]

RESTING_INPUT = {"relu": -10.0, "gelu": -10.0, "elu": -10.0, "silu": -10.0, "tanh": -10.0,
                 "leaky_hardshrink": -1.0,  # inside the cutoff only the 0.1 leak passes
                 "first_hermite": -10.0}
"""A pre-activation in each Fourier function's resting regime (this test's own reading)."""

GRID_VALUE_OF_COEFFICIENT_0 = 0.1690
"""Grid value of a field whose only nonzero Fourier coefficient is the first (frequency 0) = 1."""


def batches(n_batches=2, batch=3, seed=0):
    """Non-negative random view pairs, like voxel occupancies: [(B, 2, 4, 21, 21, 21), labels]."""
    generator = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, 2, 4, 21, 21, 21, generator=generator), torch.zeros(batch, dtype=torch.int64))
            for _ in range(n_batches)]


class FieldLayer(nn.Module):
    """One escnn nonlinearity as a torch module: ``(N, in_type.size, D, H, W)`` -> tensor."""

    def __init__(self, nonlinearity):
        super().__init__()
        self.nonlinearity = nonlinearity

    def forward(self, x):
        return self.nonlinearity(self.nonlinearity.in_type(x)).tensor


def schema_fourier_functions() -> list[str]:
    return SCHEMA["$defs"]["fourier_function"]["enum"]


def test_every_schema_fourier_function_has_a_rule_and_a_resting_input():
    assert set(schema_fourier_functions()) == set(fields.FOURIER_FUNCTIONS) == set(FOURIER_RESPONSES) \
        == set(RESTING_INPUT)


def fourier_inputs(first_field_value: float, fields_n=3, seed=0):
    """[(N, fields * 35, 3, 3, 3), labels]: field 0 constant ``first_field_value`` on the
    grid; the others random coefficients (grid values of std ~2)."""
    generator = torch.Generator().manual_seed(seed)
    data = []
    for _ in range(2):
        x = 2.0 * torch.randn(4, fields_n, 35, 3, 3, 3, generator=generator)
        x[:, 0] = 0.0
        x[:, 0, 0] = first_field_value / GRID_VALUE_OF_COEFFICIENT_0
        data.append((x.flatten(1, 2), torch.zeros(4, dtype=torch.int64)))
    return data


def fourier_layer(function: str) -> FieldLayer:
    return FieldLayer(fields.fourier_nonlinearity(fields.fourier_type(3), function))


def test_a_field_constant_on_the_grid_has_the_value_the_test_assumes():
    layer = fourier_layer("relu").nonlinearity
    (x, _), = fourier_inputs(-2.0)[:1]
    grid = layer.ift(layer.in_type(x)).tensor  # (N, fields, 96, 3, 3, 3)
    np.testing.assert_allclose(grid[:, 0].numpy(), -2.0, rtol=1e-3)


@pytest.mark.parametrize("function", schema_fourier_functions())
def test_fourier_field_resting_everywhere_is_dead_and_dormant_and_live_fields_are_neither(function):
    layers = measure_activity(fourier_layer(function), fourier_inputs(RESTING_INPUT[function]), open_fraction=OPEN_FRACTION)
    (layer,) = layers
    assert (layer.kind, layer.function, layer.unit) == ("fourier", function, "field")
    assert layer.positions == 96 * 27 and layer.inputs == 8
    assert list(layer.channels) == [35, 35, 35]
    assert layer.dead.tolist() == [True, False, False]
    score = layer.dormancy()
    assert score[0] == 0.0 and (score[1:] > 0.5).all(), score
    row = layer_table(layers, tau=0.1).iloc[0]
    assert (row["units"], row["dead"], row["dormant"]) == (3, 1, 1)
    assert (row["channels"], row["dead_channels"], row["dormant_channels"]) == (105, 35, 35)


def test_elu_field_pinned_at_minus_one_scores_zero_not_the_layer_maximum():
    """The measured bug: scored by |output|, a dead ELU field (-1 everywhere) was the
    largest unit of its layer."""
    (layer,) = measure_activity(fourier_layer("elu"), fourier_inputs(-10.0), open_fraction=OPEN_FRACTION)
    assert layer.dormancy()[0] == 0.0


@pytest.mark.parametrize("function, value", [("leaky_hardshrink", -10.0), ("leaky_hardshrink", 3.0),
                                             ("tanh", -1.0), ("first_hermite", -1.0), ("elu", 0.5)])
def test_fourier_field_outside_the_resting_regime_is_live(function, value):
    (layer,) = measure_activity(fourier_layer(function), fourier_inputs(value), open_fraction=OPEN_FRACTION)
    assert not layer.dead.any() and layer.fraction_active[0] == 1.0
    assert layer.dormancy()[0] > 0.1


def test_first_hermite_field_in_its_upper_tail_is_dead_too():
    (layer,) = measure_activity(fourier_layer("first_hermite"), fourier_inputs(10.0), open_fraction=OPEN_FRACTION)
    assert layer.dead.tolist() == [True, False, False]


def test_unknown_fourier_function_is_refused():
    layer = FieldLayer(fields.escnn_module().nn.FourierPointwise(
        fields.fourier_type(1), list(fields.so3_grid()), function=lambda t: t))
    with pytest.raises(ValueError, match="no dead-unit rule"):
        with ActivityRecorder(layer, OPEN_FRACTION):
            pass


def gate_inputs(logits, seed=0):
    """[(N, 3 gates + 3 * 35, 3, 3, 3), labels]: gate i's logit ``logits[i]`` everywhere
    (None: random N(0, 1)); the gated fields random."""
    generator = torch.Generator().manual_seed(seed)
    data = []
    for _ in range(2):
        x = torch.randn(4, 3 + 3 * 35, 3, 3, 3, generator=generator)
        for i, logit in enumerate(logits):
            if logit is not None:
                x[:, i] = logit
        data.append((x, torch.zeros(4, dtype=torch.int64)))
    return data


def test_closed_gate_is_dead_and_dormant_and_a_gate_below_one_half_is_live():
    gate = fields.gated_nonlinearity(fields.fourier_type(3))
    with torch.no_grad():
        gate.bias.zero_()
    (layer,) = measure_activity(FieldLayer(gate), gate_inputs([-10.0, -0.4, None]), open_fraction=OPEN_FRACTION)
    assert (layer.kind, layer.function, layer.unit) == ("gated", "sigmoid_gate", "gate")
    assert list(layer.channels) == [35, 35, 35]
    # gate 1 sits at sigmoid(-0.4) = 0.40 everywhere: it passes 40% of its field
    assert layer.fraction_active[0] == 0.0 and layer.fraction_active[1] == 1.0
    assert layer.fraction_active[2] > 0.9  # open beyond 0.05 where the logit > -2.94
    score = layer.dormancy()
    assert score[0] == 0.0 and (score[1:] > 1.0).all(), score
    row = layer_table([layer], tau=0.1).iloc[0]
    assert (row["dead"], row["dormant"], row["dead_channels"], row["channels"]) == (1, 1, 35, 105)


def test_gate_closed_by_its_own_bias_is_dead():
    gate = fields.gated_nonlinearity(fields.fourier_type(3))
    with torch.no_grad():
        gate.bias.copy_(torch.tensor([[20.0, 0.0, 0.0]]))
    (layer,) = measure_activity(FieldLayer(gate), gate_inputs([None, None, None]), open_fraction=OPEN_FRACTION)
    assert layer.dead.tolist() == [True, False, False]


@pytest.mark.parametrize("module_class, resting", [
    (nn.ReLU, -10.0), (nn.LeakyReLU, -10.0), (nn.ELU, -10.0), (nn.CELU, -10.0), (nn.SELU, -10.0),
    (nn.GELU, -10.0), (nn.SiLU, -10.0), (nn.Mish, -10.0), (nn.Tanh, -10.0), (nn.Sigmoid, -10.0),
    (nn.Hardshrink, 0.3), (nn.Softshrink, -0.3)])  # shrinks: lambda 0.5
def test_torch_pointwise_channel_resting_everywhere_is_dead_and_dormant(module_class, resting):
    generator = torch.Generator().manual_seed(0)
    x = 2.0 * torch.randn(16, 3, 5, generator=generator)
    x[:, 0] = resting
    (layer,) = measure_activity(nn.Sequential(module_class()), [(x, torch.zeros(16))], open_fraction=OPEN_FRACTION)
    assert (layer.kind, layer.unit) == ("pointwise", "channel") and list(layer.channels) == [1, 1, 1]
    assert layer.dead.tolist() == [True, False, False]
    score = layer.dormancy()
    assert score[0] == 0.0 and (score[1:] > 0.5).all(), score


def test_relu_channel_forced_negative_is_dead_and_the_rest_of_its_layer_is_not():
    torch.manual_seed(0)
    model = build_model("plain", PLAIN)
    norm = model.encoder[1]  # the first conv's batch norm: its output is the ReLU's input
    with torch.no_grad():
        norm.weight.zero_()           # pre-activation = beta, whatever the input
        norm.bias.copy_(torch.tensor([-1.0, 1.0]))
    layers = measure_activity(model, batches(), open_fraction=OPEN_FRACTION)
    first = layers[0]
    assert (first.name, first.kind, first.function, first.unit) == ("encoder.2", "pointwise", "relu", "channel")
    assert first.inputs == 2 * 3 * 2  # views, not pairs: both views pass the encoder
    assert first.positions == 19 ** 3
    np.testing.assert_array_equal(first.fraction_active, [0.0, 1.0])
    table = layer_table(layers, tau=0.1)
    row = table.iloc[0]
    assert (row["units"], row["dead"], row["dormant"]) == (2, 1, 1)
    assert (row["channels"], row["dead_channels"], row["dormant_channels"]) == (2, 1, 1)
    assert row[hist_columns()[0]] == 1 and row[hist_columns()[-1]] == 1
    assert list(table["layer"]) == ["encoder.2", "encoder.5", "encoder.8", "encoder.11", "encoder.13",
                                    "head.1"]
    assert list(table["layer_name"]) == list(table["layer"])  # no names given: the paths
    assert list(table["relative_depth"]) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    named = layer_table(layers, tau=0.1, names=layer_names(model, PLAIN))
    assert list(named["layer_name"]) == ["conv 1", "conv 2", "conv 3", "conv 4", "conv 5", "head 1"]
    assert (table[hist_columns()].sum(axis=1) == table["units"]).all()
    assert (table["channels"] == table["units"]).all()


def test_fraction_active_equals_a_direct_count():
    torch.manual_seed(1)
    model = build_model("plain", PLAIN).eval()
    data = batches()
    layers = {layer.name: layer for layer in measure_activity(model, data, open_fraction=OPEN_FRACTION)}
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
    return build_model("tiny_escnn", ESCNN)  # fourier_function: elu (the default)


def test_escnn_fourier_field_forced_negative_is_dead_and_dormant(escnn_model):
    last_conv = escnn_model.encoder.layers[-2]  # 3^3 -> 1^3, with bias; 4 fields
    with torch.no_grad():
        last_conv.weights.zero_()  # the field is its bias: constant on the grid
        last_conv.bias.copy_(torch.tensor([-1.0, 1.0, 1.0, 1.0]))
    layers = measure_activity(escnn_model, batches(n_batches=1, batch=2), open_fraction=OPEN_FRACTION)
    kinds = [(layer.kind, len(layer.active), layer.positions) for layer in layers]
    # fields of each Fourier nonlinearity, read at 96 grid points x voxels; then the MLP head
    assert kinds == [("fourier", 1, 96 * 19 ** 3), ("fourier", 2, 96 * 9 ** 3), ("fourier", 2, 96 * 7 ** 3),
                     ("fourier", 4, 96 * 3 ** 3), ("fourier", 4, 96), ("pointwise", 8, 1)]
    np.testing.assert_array_equal(layers[4].fraction_active, [0.0, 1.0, 1.0, 1.0])
    assert layers[4].dormancy()[0] == 0.0  # ELU: the field sits at elu(-c) < 0, its resting side
    table = layer_table(layers, tau=0.1, names=layer_names(escnn_model, ESCNN))
    assert tuple(table.loc[4, ["dead", "dormant", "dead_channels", "channels"]]) == (1, 1, 35, 140)
    # the plain twin's names, layer for layer
    assert list(table["layer_name"]) == ["conv 1", "conv 2", "conv 3", "conv 4", "conv 5", "head 1"]
    assert list(table["unit"]) == ["field"] * 5 + ["channel"]
    assert (table.loc[:3, "mean_fraction_active"] > 0).all()


def test_escnn_hooks_are_removed_after_measuring(escnn_model):
    measure_activity(escnn_model, batches(n_batches=1, batch=1), open_fraction=OPEN_FRACTION)
    hooked = [m for m in escnn_model.modules() if m._forward_hooks or m._forward_pre_hooks]
    assert hooked == []


# --- final and best weights: the rule's script and the table --------------------------------

def test_the_rule_script_analyses_the_final_and_the_best_weights(small_db, tmp_path):
    """scripts/analyze_dead_units.py on weights files as training writes them (final/weights.pt
    and final/best_weights.pt): one table per file, the best one of its own weights."""
    import pandas as pd

    from equivox.run_state import weights_of
    from equivox.tables import build_table
    from equivox.views import ViewPairSampler, write_view_set
    from tests.defaults import VIEW_PARAMS
    from tests.workflow_helpers import REPO

    spec = importlib.util.spec_from_file_location("analyze_dead_units", REPO / "scripts/analyze_dead_units.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    views = tmp_path / "val.h5"
    write_view_set(views, ViewPairSampler(small_db, "val", VIEW_PARAMS, seed=0), 4, progress=False)
    torch.manual_seed(0)
    model = build_model("plain", PLAIN)
    record = {"arch": "plain", "spec": PLAIN, "head": "mlp", "in_channels": 4}
    torch.save({"model": weights_of(model), **record}, tmp_path / "weights.pt")
    with torch.no_grad():  # the best weights: first-layer channel 0 shut off for good
        model.encoder[1].bias[0] = -1e4
    torch.save({"model": weights_of(model), **record}, tmp_path / "best_weights.pt")
    tables = {name: tmp_path / f"plain{name}.tsv" for name in ("", ".best")}
    script.main(tmp_path / "weights.pt", views, tables[""], threads=1, best_weights=tmp_path / "best_weights.pt",
         best_table=tables[".best"], n_examples=4, tau=0.1, open_fraction=OPEN_FRACTION, batch_size=2,
         device="cpu")
    final, best = (pd.read_csv(tables[name], sep="\t") for name in ("", ".best"))
    assert final["layer"].tolist() == best["layer"].tolist()
    assert best["dead"].iloc[0] == final["dead"].iloc[0] + 1
    numbers, shown = build_table("dead_units", confidence=0.95, dead_units=[tables[""], tables[".best"]])
    assert set(numbers["weights"]) == {"final", "best"} and set(numbers["model"]) == {"plain"}
    assert numbers.loc[numbers["weights"] == "best", "dead"].tolist() == best["dead"].tolist()


def layer_rows(dead: list[int]):
    import pandas as pd

    n = len(dead)
    return pd.DataFrame({"layer_index": range(n), "layer": [f"l{i}" for i in range(n)],
                         "layer_name": [f"stage {i}" for i in range(n)], "relative_depth": np.linspace(0, 1, n),
                         "kind": "pointwise", "function": "relu", "unit": "channel", "units": 8, "dead": dead,
                         "dormant": dead, "channels": 8, "dead_channels": dead, "dormant_channels": dead})


def test_dead_units_table_has_final_then_best_weights_per_model(tmp_path):
    from equivox.tables import build_table, dead_units_source

    paths = {}
    for name, dead in (("a.tsv", [0, 1]), ("b.tsv", [2]), ("a.best.tsv", [3, 4]), ("b.best.tsv", [5])):
        paths[name] = tmp_path / name
        layer_rows(dead).to_csv(paths[name], sep="\t", index=False)
    assert dead_units_source(paths["a.best.tsv"]) == ("a", "best")
    assert dead_units_source(paths["b.tsv"]) == ("b", "final")
    numbers, shown = build_table("dead_units", confidence=0.95, dead_units=list(paths.values()))
    assert list(numbers.columns[:2]) == ["model", "weights"]
    assert list(zip(numbers["model"], numbers["weights"], numbers["dead"])) == [
        ("a", "final", 0), ("a", "final", 1), ("a", "best", 3), ("a", "best", 4), ("b", "final", 2),
        ("b", "best", 5)]
    totals = shown[shown["layer"] == "all layers"]
    assert list(zip(totals["model"], totals["weights"], totals["dead/units (channels)"])) == [
        ("a", "final", "1/16 (1/16)"), ("a", "best", "7/16 (7/16)"), ("b", "final", "2/8 (2/8)"),
        ("b", "best", "5/8 (5/8)")]
    # final weights alone (no best records given): the table as before, weights "final"
    numbers, _ = build_table("dead_units", confidence=0.95, dead_units=[paths["a.tsv"], paths["b.tsv"]])
    assert (numbers["weights"] == "final").all() and numbers["model"].tolist() == ["a", "a", "b"]
