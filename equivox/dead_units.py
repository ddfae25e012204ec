"""Dead and dormant units of a trained model, measured with forward hooks on its nonlinearities.

Units. Every module that is an instance of a class below is hooked (first match wins).
A *unit* is what one weight pattern switches on or off, and it is read at *positions*
(per input); its *physical channels* are the tensor channels it occupies, so that
models of different families can be compared on either count:

==========  ==============================================  =============  ==============  ================
kind        classes                                         unit           channels/unit   positions
==========  ==============================================  =============  ==============  ================
pointwise   torch.nn ReLU, ReLU6, LeakyReLU, PReLU, ELU,    channel        1               voxels (1 for a
            CELU, SELU, GELU, SiLU, Mish, Tanh, Sigmoid,                                   Linear head)
            Hardshrink, Softshrink; escnn.nn ReLU, ELU,
            LeakyReLU, PointwiseNonLinearity
fourier     escnn.nn.FourierPointwise (and subclasses:      field (one     field size      voxels x grid
            FourierELU, QuotientFourierPointwise, ...)      regular rep.)  (35 at band     points (96,
                                                                           limit 2)        thomson_cube)
gated       escnn.nn.GatedNonLinearity1                     gate (one per  size of the     voxels
                                                            gated field)   gated field
norm        escnn.nn.NormNonLinearity (n_relu)              field          field size      voxels
==========  ==============================================  =============  ==============  ================

A Fourier unit is read on the group grid: the hook reads the input of the module's
final Fourier transform, i.e. the function's output ``y = f(x)`` sampled at the 96
grid rotations, shape ``(N, fields, 96, D, H, W)``. A gate is read as its value
``sigmoid(logit - bias)``; a norm unit as the norm of its output field.

Activity is relative to the function's resting regime, not to 0. Each function
``f`` has a *resting regime* of pre-activations, where it passes (almost) nothing,
and a *resting level* ``r``. A sample is **active** when it lies outside the resting
regime; its **magnitude** is ``|y - r|`` on active samples and 0 on resting ones. All
functions used here are monotone or even in the right way for the test to be made on
the output ``y``:

==========================  ======================  ============  ==============================
function                    resting regime (x)      level r       active where (output y)
==========================  ======================  ============  ==============================
ReLU, ReLU6, leaky ReLU,    x <= 0: the floor       0 (= f(0))    y > 0, i.e. x > 0
PReLU, ELU, CELU, SELU,     (ELU -> -1, GELU/SiLU/
GELU, SiLU, Mish            Mish dip and -> 0, the
                            leak of leaky ReLU)
tanh                        saturated low           -1            y + 1 > 2 eps (x > -1.47 at
                                                                  eps = 0.05)
sigmoid gate                closed                  0             y > eps
leaky hard shrink           |x| <= 2: only the      0             |y| > 0.2 (= f(2)), i.e.
(cutoff 2, slope 0.1)       0.1 leak passes                       |x| > 2
hard / soft shrink          |x| <= lambda           0             y != 0
first Hermite               both tails and the      0             |y| > eps * max|f| (0.644),
                            centre (f -> 0)                       i.e. 0.03 < |x| < 3.04
norm ReLU                   norm <= bias            0             output norm > 0
==========================  ======================  ============  ==============================

``eps`` is ``open_fraction`` (default 0.05): bounded functions (sigmoid, tanh, first
Hermite) approach their resting level only asymptotically, so "active" needs a small
share of their range; unbounded rectifiers are active as soon as they pass their
threshold, as in the ReLU convention. The choices and why:

* ELU's -1, GELU's dip, a leak: all are the function's "off" side. Scored by ``|y|``
  (a literal reading of Sokar et al.), an ELU field pinned at -1 scores like a live
  field, or highest in its layer, and is never dormant; here it is dead with magnitude 0.
* A gate of 0.4 still passes 40% of its field: it is active. A gate is dead only if it
  never opens beyond ``eps``; its magnitude is the gate value.
* tanh is a rescaled sigmoid (``tanh x = 2 sigmoid(2x) - 1``), so it is read as a gate:
  resting at -1, active once it is ``eps`` of its range above that.
* Magnitudes are counted only where active, so a dead unit has magnitude exactly 0 and
  is dormant for every ``tau >= 0``: dead units are a subset of dormant ones in every
  family. For ReLU the magnitude is ``|y|``, Sokar et al.'s definition.

Per unit, the *fraction active* is the share of (input, position) samples where it is
active; the inputs of encoder layers are views (two per example pair), those of head
layers are pairs. A unit is **dead** if it is never active over the evaluation set.
Its **dormancy score** is its mean magnitude over the layer's mean of those means
(Sokar et al. 2023, "The dormant neuron phenomenon in deep reinforcement learning");
a unit is **dormant** if the score is <= ``tau``. Counts are reported in units and in
physical channels (a unit counts with its channels).
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .models import fields
from .models.fields import escnn_module

log = logging.getLogger(__name__)

HIST_EDGES = np.linspace(0.0, 1.0, 11)
"""Bins of the per-unit fraction active; the last bin includes 1."""

@dataclass(frozen=True)
class Response:
    """How one function's output ``y`` is read (see the module docstring).

    Active where ``d > threshold + eps * span`` with ``d = y - rest`` (``|y - rest|`` if
    ``two_sided``); magnitude ``d`` where active, else 0.
    """

    rest: float = 0.0
    threshold: float = 0.0
    span: float = 0.0
    two_sided: bool = False

    def read(self, y: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(active bool, magnitude float)``, both shaped as ``y``."""
        d = y - self.rest
        if self.two_sided:
            d = d.abs()
        active = d > self.threshold + eps * self.span
        return active, torch.where(active, d, torch.zeros((), dtype=d.dtype, device=d.device))


def _default(function, parameter: str) -> float:
    return inspect.signature(function).parameters[parameter].default


_HARDSHRINK_EDGE = abs(float(fields.leaky_hardshrink(
    torch.tensor(_default(fields.leaky_hardshrink, "cutoff")))))  # f(cutoff) = slope * cutoff
_HERMITE_PEAK = float(fields.first_hermite(torch.tensor(1.0)))  # max |f| is at x = +-1

RECTIFIER = Response()
TANH = Response(rest=-1.0, span=2.0)
SIGMOID = Response(span=1.0)
SHRINK = Response(two_sided=True)

FOURIER_RESPONSES: dict[str, Response] = {
    "relu": RECTIFIER, "gelu": RECTIFIER, "elu": RECTIFIER, "silu": RECTIFIER, "tanh": TANH,
    "leaky_hardshrink": Response(threshold=_HARDSHRINK_EDGE, two_sided=True),
    "first_hermite": Response(span=_HERMITE_PEAK, two_sided=True),
}
"""Response of each Fourier function of ``equivox.models.fields.FOURIER_FUNCTIONS``, by name."""

TORCH_POINTWISE: tuple[tuple[tuple[type, ...], Response], ...] = (
    ((nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish),
     RECTIFIER),
    ((nn.Tanh,), TANH), ((nn.Sigmoid,), SIGMOID), ((nn.Hardshrink, nn.Softshrink), SHRINK))
"""torch.nn pointwise nonlinearities and their responses."""

ESCNN_FUNCTIONS = {F.relu_: RECTIFIER, F.elu_: RECTIFIER, torch.relu: RECTIFIER, torch.tanh_: TANH,
                   F.tanh: TANH, torch.sigmoid: SIGMOID, F.sigmoid: SIGMOID, torch.sigmoid_: SIGMOID}
"""Functions escnn's own modules apply (``p_relu``, ``p_elu``, ``p_tanh``, ``p_sigmoid``)."""


def function_response(function) -> tuple[str, Response]:
    """``(name, response)`` of a function applied by an escnn module; raises if unknown."""
    for name, known in fields.FOURIER_FUNCTIONS.items():
        if function is known:
            return name, FOURIER_RESPONSES[name]
    for known, response in ESCNN_FUNCTIONS.items():
        if function is known:
            return function.__name__.strip("_"), response
    raise ValueError(f"no dead-unit rule for the function {function!r}; add one to equivox.dead_units")


def module_response(module: nn.Module) -> tuple[str, str, Response] | None:
    """``(kind, function name, response)`` of a nonlinearity module, None for any other module."""
    enn = escnn_module().nn
    if isinstance(module, enn.FourierPointwise):
        return ("fourier", *function_response(module._function))
    if isinstance(module, enn.GatedNonLinearity1):
        if module.function not in (torch.sigmoid, F.sigmoid):
            raise ValueError(f"no dead-unit rule for gates through {module.function!r}")
        return "gated", "sigmoid_gate", SIGMOID
    if isinstance(module, enn.NormNonLinearity):
        if module._function is not torch.relu:
            raise ValueError("only n_relu norm nonlinearities have a dead-unit rule")
        return "norm", "norm_relu", RECTIFIER
    if isinstance(module, enn.PointwiseNonLinearity):
        return ("pointwise", *function_response(module._function))
    if isinstance(module, (enn.ReLU, enn.ELU, enn.LeakyReLU)):
        return "pointwise", type(module).__name__.lower(), RECTIFIER
    for classes, response in TORCH_POINTWISE:
        if isinstance(module, classes):
            return "pointwise", type(module).__name__.lower(), response
    return None


def unit_channels(module: nn.Module, kind: str, units: int) -> tuple[str, np.ndarray]:
    """``(what a unit is, physical channels per unit (units,))`` of a hooked module."""
    if kind == "fourier":
        return "field", np.array([r.size for r in module.out_type.representations])
    if kind == "gated":  # gates are matched to the gated fields size group by size group
        return "gate", np.array([size for size in module._order for _ in range(module._nfields[size])])
    if kind == "norm":
        return "field", np.array([r.size for r in module.out_type.representations])
    return "channel", np.ones(units, dtype=int)


def hist_columns() -> list[str]:
    """Column names of the fraction-active histogram: ``active_0.0-0.1`` ... ``active_0.9-1.0``."""
    return [f"active_{lo:.1f}-{hi:.1f}" for lo, hi in zip(HIST_EDGES[:-1], HIST_EDGES[1:])]


@dataclass
class LayerActivity:
    """Running totals of one hooked nonlinearity, per unit."""

    name: str                 # qualified module name, e.g. "encoder.layers.2"
    kind: str                 # pointwise | fourier | gated | norm
    function: str             # e.g. "elu" (Fourier, config name), "relu" (torch class), "sigmoid_gate"
    unit: str                 # channel | field | gate
    channels: np.ndarray      # (units,) physical channels of each unit
    active: torch.Tensor      # (units,) int64: active (input, position) samples
    magnitude: torch.Tensor   # (units,) float64: summed magnitude
    inputs: int = 0           # inputs seen
    positions: int = 0        # positions per input

    def add(self, active: torch.Tensor, magnitude: torch.Tensor) -> None:
        """Accumulate one batch: ``active`` (N, units, positions) bool, ``magnitude`` same shape."""
        self.active += active.sum(dim=(0, 2)).cpu()
        self.magnitude += magnitude.double().sum(dim=(0, 2)).cpu()
        self.inputs += active.shape[0]
        self.positions = active.shape[2]

    @property
    def fraction_active(self) -> np.ndarray:
        """(units,) share of the (input, position) samples where each unit is active."""
        return (self.active.double() / (self.inputs * self.positions)).numpy()

    @property
    def dead(self) -> np.ndarray:
        """(units,) bool: never active."""
        return (self.active == 0).numpy()

    def dormancy(self) -> np.ndarray:
        """(units,) mean magnitude over the layer's average of it (0 where the layer is all zero)."""
        mean = self.magnitude.numpy() / (self.inputs * self.positions)
        layer_mean = mean.mean()
        return mean / layer_mean if layer_mean > 0 else np.zeros_like(mean)


def _flat(tensor: torch.Tensor) -> torch.Tensor:
    """(N, units, *positions) -> (N, units, positions)."""
    return tensor.reshape(tensor.shape[0], tensor.shape[1], -1)


def _pointwise(module, inputs, output):
    return _flat(getattr(output, "tensor", output))  # escnn GeometricTensor or torch tensor


def _fourier_grid(ft, args):
    return _flat(args[0].tensor)  # (N, fields, grid, *spatial) -> (N, fields, grid * voxels)


def _gated(gates_id: str, module, inputs, output):
    x = inputs[0].tensor
    index = module.gates_indices
    logits = x[:, index[0]:index[1]] if module._contiguous[gates_id] else x[:, index]
    return _flat(module.function(logits - module.bias.view(1, -1, *[1] * (x.dim() - 2))))


def _norm(module, inputs, output):
    field_type, values = output.type, output.tensor
    norms = torch.stack([values[:, start:end].norm(dim=1) for start, end
                         in zip(field_type.fields_start, field_type.fields_end)], dim=1)
    return _flat(norms)


class ActivityRecorder:
    """Context manager: hooks every nonlinearity of ``model`` and accumulates its units' activity.

    ``layers`` lists a :class:`LayerActivity` per hooked module in the order of first
    call in the forward pass. ``open_fraction`` is ``eps`` of the module docstring.
    """

    def __init__(self, model: nn.Module, open_fraction: float):
        if not 0 <= open_fraction < 1:
            raise ValueError(f"open_fraction must be in [0, 1), got {open_fraction}")
        self.model = model
        self.open_fraction = open_fraction
        self.layers: dict[str, LayerActivity] = {}
        self._handles = []

    def _record(self, name: str, module: nn.Module, kind: str, function: str, response: Response, probe):
        def hook(*args):
            active, magnitude = response.read(probe(*args), self.open_fraction)
            if name not in self.layers:
                units = active.shape[1]
                unit, channels = unit_channels(module, kind, units)
                self.layers[name] = LayerActivity(name, kind, function, unit, channels,
                                                  torch.zeros(units, dtype=torch.int64),
                                                  torch.zeros(units, dtype=torch.float64))
            self.layers[name].add(active, magnitude)
        return hook

    def __enter__(self) -> "ActivityRecorder":
        gates_id = escnn_module().nn.modules.nonlinearities.gated1.GATES_ID
        probes = {"gated": partial(_gated, gates_id), "norm": _norm, "pointwise": _pointwise}
        for name, module in self.model.named_modules():
            found = module_response(module)
            if found is None:
                continue
            kind, function, response = found
            if kind == "fourier":
                # the function's output on the grid is the input of the final transform
                handle = module.ft.register_forward_pre_hook(
                    self._record(name, module, kind, function, response, _fourier_grid))
            else:
                handle = module.register_forward_hook(
                    self._record(name, module, kind, function, response, probes[kind]))
            self._handles.append(handle)
        if not self._handles:
            raise ValueError("model has no nonlinearity of a known kind (see equivox.dead_units)")
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@torch.no_grad()
def measure_activity(model: nn.Module, loader, device: torch.device | str = "cpu", *,
                     open_fraction: float) -> list[LayerActivity]:
    """Run ``model`` (eval mode) over ``loader``'s ``(images, labels)`` batches; return the
    activity of every hooked nonlinearity, in forward order."""
    model.eval()
    with ActivityRecorder(model, open_fraction) as recorder:
        for images, _ in loader:
            model(images.to(device))
    return list(recorder.layers.values())


def layer_table(layers: list[LayerActivity], tau: float, names: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per hooked layer (forward order).

    Columns: ``layer_index`` (1-based), ``layer`` (module path), ``layer_name`` (its
    readable name in ``names``, :func:`equivox.layer_names.layer_names`; else the
    path), ``relative_depth`` (0 for the first hooked layer, 1 for the last, evenly
    between), ``kind``, ``function``, ``unit``
    (channel | field | gate), ``units``, ``channels`` (physical), ``inputs``,
    ``positions`` (per input), ``dead``, ``dormant`` (score <= ``tau``), the same two
    in physical channels (``dead_channels``, ``dormant_channels``),
    ``mean_fraction_active``, then the count of units per fraction-active bin
    (:func:`hist_columns`).
    """
    rows = []
    for index, layer in enumerate(layers, start=1):
        fraction = layer.fraction_active
        dead, dormant = layer.dead, layer.dormancy() <= tau
        counts, _ = np.histogram(fraction, bins=HIST_EDGES)
        rows.append({"layer_index": index, "layer": layer.name,
                     "layer_name": (names or {}).get(layer.name, layer.name),
                     "relative_depth": (index - 1) / (len(layers) - 1) if len(layers) > 1 else 0.0,
                     "kind": layer.kind,
                     "function": layer.function, "unit": layer.unit,
                     "units": len(fraction), "channels": int(layer.channels.sum()),
                     "inputs": layer.inputs, "positions": layer.positions,
                     "dead": int(dead.sum()), "dormant": int(dormant.sum()),
                     "dead_channels": int(layer.channels[dead].sum()),
                     "dormant_channels": int(layer.channels[dormant].sum()),
                     "mean_fraction_active": float(fraction.mean()),
                     **dict(zip(hist_columns(), counts.tolist()))})
    return pd.DataFrame(rows)


def analyze_dead_units(weights_path, views_path, *, n_examples: int | None, tau: float,
                       open_fraction: float, batch_size: int, device: str) -> pd.DataFrame:
    """:func:`layer_table` of a trained run over the first ``n_examples`` pairs of a view set."""
    from .evaluate import view_loader
    from .layer_names import layer_names
    from .run_state import load_trained_model, pick_device

    device = pick_device(device)
    model, record = load_trained_model(weights_path, device)
    layers = measure_activity(model, view_loader(views_path, n_examples, batch_size), device,
                              open_fraction=open_fraction)
    table = layer_table(layers, tau, layer_names(model, record["spec"]))
    log.info("%s: %d hooked layers; dead %d of %d units (%d of %d channels), dormant %d units "
             "(%d channels) at tau %g", record["arch"], len(table), table["dead"].sum(),
             table["units"].sum(), table["dead_channels"].sum(), table["channels"].sum(),
             table["dormant"].sum(), table["dormant_channels"].sum(), tau)
    return table
