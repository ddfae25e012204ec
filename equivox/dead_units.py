"""Dead and dormant units of a trained model, measured with forward hooks on its nonlinearities.

Every module that is an instance of a class below is hooked (first match wins); its
*units*, the *positions* at which a unit is read for one input, when a unit is
*active*, and the *magnitude* that the dormancy score averages:

==========  ===============================================  =====================  ==========================
kind        classes                                          unit                   positions; active where
==========  ===============================================  =====================  ==========================
pointwise   torch.nn ReLU, ReLU6, LeakyReLU, PReLU, ELU,     output channel         voxels (one for a Linear
            CELU, SELU, GELU, SiLU, Mish; escnn.nn ReLU,                            head); output > 0;
            ELU, LeakyReLU, PointwiseNonLinearity                                   magnitude |output|
fourier     escnn.nn.FourierPointwise (and its subclasses    field (one regular     voxels x grid points (96,
            FourierELU, QuotientFourierPointwise, ...)       representation)        thomson_cube); the grid
                                                                                    sample after the function
                                                                                    > 0; magnitude |sample|
gated       escnn.nn.GatedNonLinearity1                      gate (one per          voxels; gate
                                                             gated field)           sigmoid(g - bias) > 1/2;
                                                                                    magnitude: the gate
norm        escnn.nn.NormNonLinearity                        field                  voxels; output norm > 0;
                                                                                    magnitude: the norm
==========  ===============================================  =====================  ==========================

For a Fourier nonlinearity the hook reads the spatial (group) domain: the input of the
module's final Fourier transform, i.e. the function's output sampled on the grid,
shape ``(N, fields, grid points, D, H, W)``. Every function the models use (ReLU, ELU,
GELU, SiLU, tanh, the first Hermite function, leaky hard-shrink) is positive exactly
where its input is, so "active" means "positive pre-activation" throughout.

Per unit, the *fraction active* is the share of (input, position) samples where it is
active; the inputs of encoder layers are views (two per example pair), those of head
layers are pairs. A unit is **dead** if it is never active over the evaluation set.
Its **dormancy score** is its mean magnitude over the layer's mean of those means
(Sokar et al. 2023, "The dormant neuron phenomenon in deep reinforcement learning");
a unit is **dormant** if the score is <= ``tau``. Dead units of a ReLU layer are dormant
for any ``tau >= 0``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch
from torch import nn

from .models.fields import escnn_module

log = logging.getLogger(__name__)

HIST_EDGES = np.linspace(0.0, 1.0, 11)
"""Bins of the per-unit fraction active; the last bin includes 1."""

TORCH_POINTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.CELU, nn.SELU,
                   nn.GELU, nn.SiLU, nn.Mish)


def nonlinearity_kinds() -> list[tuple[tuple[type, ...], str]]:
    """``(classes, kind)`` in matching order (see the module docstring)."""
    enn = escnn_module().nn
    return [((enn.FourierPointwise,), "fourier"),
            ((enn.GatedNonLinearity1,), "gated"),
            ((enn.NormNonLinearity,), "norm"),
            (TORCH_POINTWISE + (enn.ReLU, enn.ELU, enn.LeakyReLU, enn.PointwiseNonLinearity),
             "pointwise")]


def hist_columns() -> list[str]:
    """Column names of the fraction-active histogram: ``active_0.0-0.1`` ... ``active_0.9-1.0``."""
    return [f"active_{lo:.1f}-{hi:.1f}" for lo, hi in zip(HIST_EDGES[:-1], HIST_EDGES[1:])]


@dataclass
class LayerActivity:
    """Running totals of one hooked nonlinearity, per unit."""

    name: str                 # qualified module name, e.g. "encoder.layers.2"
    kind: str                 # pointwise | fourier | gated | norm
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

    def dormancy(self) -> np.ndarray:
        """(units,) mean magnitude over the layer's average of it (0 where the layer is all zero)."""
        mean = self.magnitude.numpy() / (self.inputs * self.positions)
        layer_mean = mean.mean()
        return mean / layer_mean if layer_mean > 0 else np.zeros_like(mean)


def _flat(tensor: torch.Tensor) -> torch.Tensor:
    """(N, units, *positions) -> (N, units, positions)."""
    return tensor.reshape(tensor.shape[0], tensor.shape[1], -1)


def _pointwise(module, inputs, output):
    values = _flat(getattr(output, "tensor", output))  # escnn GeometricTensor or torch tensor
    return values > 0, values.abs()


def _fourier_grid(grid_tensor):
    samples = grid_tensor.tensor  # (N, fields, grid, *spatial)
    values = samples.reshape(samples.shape[0], samples.shape[1], -1)
    return values > 0, values.abs()


def _gated(gates_id: str, module, inputs, output):
    x = inputs[0].tensor
    index = module.gates_indices
    logits = x[:, index[0]:index[1]] if module._contiguous[gates_id] else x[:, index]
    gates = _flat(module.function(logits - module.bias.view(1, -1, *[1] * (x.dim() - 2))))
    return gates > 0.5, gates


def _norm(module, inputs, output):
    field_type, values = output.type, output.tensor
    norms = torch.stack([values[:, start:end].norm(dim=1) for start, end
                         in zip(field_type.fields_start, field_type.fields_end)], dim=1)
    norms = _flat(norms)
    return norms > 0, norms


class ActivityRecorder:
    """Context manager: hooks every nonlinearity of ``model`` and accumulates its units' activity.

    ``layers`` lists a :class:`LayerActivity` per hooked module in the order of first
    call in the forward pass.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.layers: dict[str, LayerActivity] = {}
        self._handles = []

    def _record(self, name: str, kind: str, probe):
        def hook(*args):
            active, magnitude = probe(*args)
            if name not in self.layers:
                units = active.shape[1]
                self.layers[name] = LayerActivity(name, kind, torch.zeros(units, dtype=torch.int64),
                                                  torch.zeros(units, dtype=torch.float64))
            self.layers[name].add(active, magnitude)
        return hook

    def __enter__(self) -> "ActivityRecorder":
        kinds = nonlinearity_kinds()
        gates_id = escnn_module().nn.modules.nonlinearities.gated1.GATES_ID
        probes = {"gated": partial(_gated, gates_id), "norm": _norm, "pointwise": _pointwise}
        for name, module in self.model.named_modules():
            kind = next((k for classes, k in kinds if isinstance(module, classes)), None)
            if kind == "fourier":
                # the function's output on the grid is the input of the final transform
                handle = module.ft.register_forward_pre_hook(
                    self._record(name, kind, lambda ft, args: _fourier_grid(args[0])))
            elif kind is not None:
                handle = module.register_forward_hook(self._record(name, kind, probes[kind]))
            else:
                continue
            self._handles.append(handle)
        if not self._handles:
            raise ValueError("model has no nonlinearity of a known kind (see equivox.dead_units)")
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@torch.no_grad()
def measure_activity(model: nn.Module, loader, device: torch.device | str = "cpu") -> list[LayerActivity]:
    """Run ``model`` (eval mode) over ``loader``'s ``(images, labels)`` batches; return the
    activity of every hooked nonlinearity, in forward order."""
    model.eval()
    with ActivityRecorder(model) as recorder:
        for images, _ in loader:
            model(images.to(device))
    return list(recorder.layers.values())


def layer_table(layers: list[LayerActivity], tau: float) -> pd.DataFrame:
    """One row per hooked layer (forward order).

    Columns: ``layer_index`` (1-based), ``layer``, ``kind``, ``units``, ``inputs``,
    ``positions`` (per input), ``dead``, ``dormant`` (score <= ``tau``),
    ``mean_fraction_active``, then the count of units per fraction-active bin
    (:func:`hist_columns`).
    """
    rows = []
    for index, layer in enumerate(layers, start=1):
        fraction = layer.fraction_active
        counts, _ = np.histogram(fraction, bins=HIST_EDGES)
        rows.append({"layer_index": index, "layer": layer.name, "kind": layer.kind,
                     "units": len(fraction), "inputs": layer.inputs, "positions": layer.positions,
                     "dead": int((layer.active == 0).sum()),
                     "dormant": int((layer.dormancy() <= tau).sum()),
                     "mean_fraction_active": float(fraction.mean()),
                     **dict(zip(hist_columns(), counts.tolist()))})
    return pd.DataFrame(rows)


def analyze_dead_units(weights_path, views_path, *, n_examples: int | None, tau: float,
                       batch_size: int = 16, device: str = "auto") -> pd.DataFrame:
    """:func:`layer_table` of a trained run over the first ``n_examples`` pairs of a view set."""
    from .evaluate import load_trained_model, pick_device, view_loader

    device = pick_device(device)
    model, record = load_trained_model(weights_path, device)
    layers = measure_activity(model, view_loader(views_path, n_examples, batch_size), device)
    table = layer_table(layers, tau)
    log.info("%s: %d hooked layers, %d of %d units dead, %d dormant (tau %g)", record["arch"],
             len(table), table["dead"].sum(), table["units"].sum(), table["dormant"].sum(), tau)
    return table
