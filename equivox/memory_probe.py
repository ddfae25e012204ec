"""Peak memory of one training step at several batch sizes, its linear trend, and the
largest batch that fits a GPU (rule memory_probe; docs/analyses.md, "Memory and batch size").

What one *step* is: the training step of :mod:`equivox.train` on random inputs of the
trained shape ``(B, 2, C, L, L, L)`` (C channels and L voxels from the config's ``views``)
and random labels: forward (under autocast when ``train.amp`` asks for it on CUDA),
cross-entropy, backward, one step of the run's optimizer (``train.optimizer``: Adam and
AdamW hold two state tensors per weight, SGD with momentum one, plain SGD none). The model
is built from its spec exactly as the trainer builds it (:func:`equivox.models.build_model`
with ``train.head``) and the optimizer by :func:`equivox.optim.build_optimizer`.

What is measured, per batch size:

* CUDA (``measured_on = "cuda allocated"``): one model, built once; per batch size a
  warm-up step (the optimizer's state exists from then on, as in training, and cuDNN has
  chosen its algorithms), then ``torch.cuda.reset_peak_memory_stats`` and one measured step;
  ``memory_bytes`` is ``torch.cuda.max_memory_allocated`` over that step (weights, optimizer
  state, gradients, activations, the input), ``cuda_reserved_peak_bytes`` the allocator's
  ``max_memory_reserved`` (cache emptied before each batch size). An out-of-memory batch
  size is recorded (``oom = True``) and larger ones are not tried.
* CPU (``measured_on = "cpu RSS"``): each batch size in a fresh process (spawned), so that
  memory the allocator kept from an earlier, larger step cannot hide a later one. The
  child builds the model, records its RSS (``rss_baseline_bytes``), then runs one step
  while a thread samples RSS every millisecond; the step's peak ``rss_peak_bytes`` is the
  process's lifetime maximum (``ru_maxrss``) when the step raised it, the sampled maximum
  otherwise. ``rss_step_bytes`` = peak - baseline, and ``memory_bytes = model_bytes +
  rss_step_bytes``: what the step added, plus the weights (which a GPU holds too), without
  the interpreter and its libraries (which a GPU does not). It approximates, but does not
  equal, the GPU's allocated memory: CPU kernels (oneDNN) use other workspaces and
  layouts, glibc returns memory in other granules than the CUDA caching allocator, and
  one-time costs of the first step (optimizer state, lazy initialisation) land in the
  intercept.

Fit: ``memory_bytes = a + b * batch_size`` by least squares over the measured (not OOM)
batch sizes, with R^2 (1 when all points are on the line; NaN with fewer than 3 points
or no spread). Largest batch: ``floor((gpu_memory_gb - margin_gb) GiB - a) / b)``, 0 when
even the intercept does not fit, None when the slope is not positive. ``gpu_memory_gb``
is read in GiB (2^30 bytes), the unit of ``nvidia-smi`` (an A100 80GB has 81920 MiB);
``margin_gb`` is kept free for what ``max_memory_allocated`` does not count: the CUDA
context (about 0.5 GiB), cuBLAS/cuDNN workspaces and the caching allocator's
fragmentation (reserved minus allocated).
"""
from __future__ import annotations

import logging
import math
import resource
import sys
import threading
import time

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

GIB = 2 ** 30
MIB = 2 ** 20

MEASURED_ON = {"cuda": "cuda allocated", "cpu": "cpu RSS"}
"""``measured_on`` per device type: which quantity ``memory_bytes`` (and the fit) is."""

COLUMNS = ["arch", "batch_size", "device", "gpu_model", "measured_on", "memory_bytes",
           "cuda_allocated_peak_bytes", "cuda_reserved_peak_bytes", "rss_baseline_bytes",
           "rss_peak_bytes", "rss_step_bytes", "model_bytes", "step_s", "oom"]
"""Columns of ``results/analysis/memory/<arch>.tsv``, one row per batch size."""


# --- the fit -------------------------------------------------------------------------------

def fit_linear(batch_sizes, memory_bytes) -> dict:
    """Least-squares ``memory = intercept + slope * batch``: ``intercept_bytes``,
    ``slope_bytes_per_example``, ``r2`` and ``n_points``. One point (or one distinct batch
    size) gives no slope: NaN slope and R^2, intercept = the mean memory."""
    x = np.asarray(batch_sizes, dtype=float)
    y = np.asarray(memory_bytes, dtype=float)
    if len(x) == 0:  # every size ran out of memory
        return {"intercept_bytes": math.nan, "slope_bytes_per_example": math.nan, "r2": math.nan,
                "n_points": 0}
    if len(np.unique(x)) < 2:
        return {"intercept_bytes": float(y.mean()), "slope_bytes_per_example": math.nan,
                "r2": math.nan, "n_points": int(len(x))}
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - (residual ** 2).sum() / total if total > 0 and len(x) > 2 else math.nan
    return {"intercept_bytes": float(intercept), "slope_bytes_per_example": float(slope),
            "r2": float(r2), "n_points": int(len(x))}


def largest_batch(fit: dict, gpu_memory_gb: float, margin_gb: float) -> int | None:
    """The largest batch whose fitted memory fits ``gpu_memory_gb - margin_gb`` GiB: 0 when
    none does, None when the fit has no positive slope (memory does not grow with batch)."""
    usable = (gpu_memory_gb - margin_gb) * GIB
    a, b = fit["intercept_bytes"], fit["slope_bytes_per_example"]  # None: as written to JSON
    if b is None or not b > 0:  # NaN too
        return None
    return max(0, math.floor((usable - a) / b))


# --- one step ------------------------------------------------------------------------------

OPTIMIZER_KEYS = ("optimizer", "weight_decay", "momentum", "nesterov")
"""The ``train`` keys that decide the optimizer, and so its state's memory."""


def optimizer_settings(optimizer: dict | None) -> dict:
    """The :data:`OPTIMIZER_KEYS` of ``optimizer`` (a run's ``train``), or, when None, the
    config schema's defaults (Adam without weight decay); the rule always passes the run's."""
    if optimizer is None:
        from .schema import default_config

        optimizer = default_config()["train"]
    return {key: optimizer[key] for key in OPTIMIZER_KEYS}


def build(arch: str, spec: dict, in_channels: int, head: str, device, optimizer: dict | None = None):
    """The model (on ``device``) and its optimizer (``optimizer``: see
    :func:`optimizer_settings`), as :func:`equivox.train.train` makes them."""
    from types import SimpleNamespace

    import torch

    from .escnn_setup import import_escnn
    from .models import build_model
    from .optim import build_optimizer

    import_escnn()
    torch.manual_seed(0)
    model = build_model(arch, spec, in_channels=in_channels, head=head).to(device)
    model.train()
    # the learning rate does not change a step's memory
    settings = SimpleNamespace(lr=1e-3, **optimizer_settings(optimizer))
    return model, build_optimizer(model.parameters(), settings)


def model_bytes(model) -> int:
    """Bytes of the model's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def random_batch(batch_size: int, in_channels: int, length: int, device):
    """Random views ``(B, 2, C, L, L, L)`` (voxel fractions in [0, 1)) and face labels."""
    import torch

    generator = torch.Generator().manual_seed(batch_size)
    inputs = torch.rand(batch_size, 2, in_channels, length, length, length, generator=generator)
    labels = torch.randint(0, 6, (batch_size,), generator=generator)
    return inputs.to(device), labels.to(device)


def train_step(model, optimizer, inputs, labels, amp: str = "none") -> None:
    """One training step: forward, cross-entropy, backward, optimizer step (autocast only on CUDA)."""
    import torch
    from torch.nn.functional import cross_entropy

    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    use_amp = amp_dtype is not None and inputs.device.type == "cuda"
    with torch.autocast(inputs.device.type, dtype=amp_dtype, enabled=use_amp):
        logits = model(inputs)
        loss = cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _maxrss_bytes() -> int:
    """The process's lifetime peak RSS (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class _RssSampler:
    """The maximum RSS of this process, sampled every ``interval_s`` in a thread."""

    def __init__(self, interval_s: float = 0.001):
        self.interval_s, self.peak = interval_s, _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "_RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def cpu_step_rss(arch: str, spec: dict, batch_size: int, in_channels: int, length: int,
                 head: str, threads: int | None = None, optimizer: dict | None = None) -> dict:
    """In this process (meant to be a fresh one): build, then one step at ``batch_size``
    on the CPU; the RSS fields of a row (see the module docstring)."""
    import torch

    from .models import count_parameters

    if threads:
        torch.set_num_threads(threads)
    model, optimizer = build(arch, spec, in_channels, head, "cpu", optimizer)
    inputs, labels = random_batch(batch_size, in_channels, length, "cpu")
    baseline, lifetime_before = _rss(), _maxrss_bytes()
    start = time.perf_counter()
    with _RssSampler() as sampler:
        train_step(model, optimizer, inputs, labels)
    step_s = time.perf_counter() - start
    lifetime_after = _maxrss_bytes()
    peak = lifetime_after if lifetime_after > lifetime_before else sampler.peak
    return {"rss_baseline_bytes": baseline, "rss_peak_bytes": peak,
            "rss_step_bytes": max(0, peak - baseline), "model_bytes": model_bytes(model),
            "step_s": step_s, "parameters": count_parameters(model)}


def _child(queue, kwargs) -> None:
    try:
        queue.put(("ok", cpu_step_rss(**kwargs)))
    except BaseException as error:  # noqa: BLE001 - reported to the parent
        import traceback

        queue.put(("error", f"{error!r}\n{traceback.format_exc()}"))


def cpu_step_rss_fresh(**kwargs) -> dict:
    """:func:`cpu_step_rss` in a freshly spawned process (nothing inherited from earlier steps)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, kwargs))
    process.start()
    try:
        status, result = queue.get()
    finally:
        process.join()
    if status != "ok":
        raise RuntimeError(f"memory probe of {kwargs['arch']} at batch {kwargs['batch_size']} failed "
                           f"in its process: {result}")
    return result


def cuda_rows(arch: str, spec: dict, batch_sizes, in_channels: int, length: int, head: str,
              amp: str, device, optimizer: dict | None = None) -> list[dict]:
    """The CUDA fields of one row per batch size (ascending); stops at the first OOM."""
    import torch

    from .models import count_parameters

    model, optimizer = build(arch, spec, in_channels, head, device, optimizer)
    size, parameters = model_bytes(model), count_parameters(model)
    rows = []
    for batch_size in sorted(batch_sizes):
        row = {"batch_size": batch_size, "model_bytes": size, "parameters": parameters, "oom": False}
        try:
            inputs, labels = random_batch(batch_size, in_channels, length, device)
            train_step(model, optimizer, inputs, labels, amp)  # warm-up
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            train_step(model, optimizer, inputs, labels, amp)
            torch.cuda.synchronize(device)
            row.update(step_s=time.perf_counter() - start,
                       cuda_allocated_peak_bytes=torch.cuda.max_memory_allocated(device),
                       cuda_reserved_peak_bytes=torch.cuda.max_memory_reserved(device))
            row["memory_bytes"] = row["cuda_allocated_peak_bytes"]
        except torch.cuda.OutOfMemoryError:
            log.warning("%s: out of memory at batch %d; larger batch sizes not tried", arch, batch_size)
            row["oom"] = True
            rows.append(row)
            break
        finally:
            inputs = labels = None
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
        rows.append(row)
    return rows


def probe_memory(arch: str, spec: dict, *, batch_sizes, in_channels: int, length: int,
                 head: str = "mlp", amp: str = "none", device: str = "auto",
                 gpu_memory_gb: float = 80.0, margin_gb: float = 2.0,
                 threads: int | None = None, optimizer: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Measure one architecture: ``(rows, summary)``, rows in :data:`COLUMNS` (one per batch
    size, ascending), summary the fit (:func:`fit_linear`) and :func:`largest_batch`.
    ``optimizer``: the run's :data:`OPTIMIZER_KEYS` (:func:`optimizer_settings`)."""
    import torch

    from .run_state import pick_device

    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("memory probe device is 'cuda' but this machine has no usable GPU")
    target = pick_device(device)
    batch_sizes = sorted(set(int(b) for b in batch_sizes))
    gpu_model = torch.cuda.get_device_name(target) if target.type == "cuda" else ""
    if target.type == "cuda":
        rows = cuda_rows(arch, spec, batch_sizes, in_channels, length, head, amp, target, optimizer)
    else:
        rows = []
        for batch_size in batch_sizes:
            measured = cpu_step_rss_fresh(arch=arch, spec=spec, batch_size=batch_size,
                                          in_channels=in_channels, length=length, head=head, threads=threads,
                                          optimizer=optimizer)
            rows.append({"batch_size": batch_size, "oom": False, **measured,
                         "memory_bytes": measured["model_bytes"] + measured["rss_step_bytes"]})
            log.info("%s batch %d: RSS %.1f MiB after build, step peak %.1f MiB (+%.1f MiB) in %.2f s",
                     arch, batch_size, measured["rss_baseline_bytes"] / MIB,
                     measured["rss_peak_bytes"] / MIB, measured["rss_step_bytes"] / MIB, measured["step_s"])
    parameters = rows[0]["parameters"]
    table = pd.DataFrame([{"arch": arch, "device": target.type, "gpu_model": gpu_model,
                           "measured_on": MEASURED_ON[target.type], **row} for row in rows])
    table = table.reindex(columns=COLUMNS)
    measured = table[~table["oom"].astype(bool)]
    fit = fit_linear(measured["batch_size"], measured["memory_bytes"])
    summary = {
        "arch": arch, "family": spec["family"], "parameters": parameters,
        "device": target.type, "gpu_model": gpu_model, "measured_on": MEASURED_ON[target.type],
        "head": head, "amp": amp if target.type == "cuda" else "none",
        "optimizer": optimizer_settings(optimizer),
        "input_shape": [None, 2, in_channels, length, length, length],
        "batch_sizes": batch_sizes, "oom_batch_sizes": table.loc[table["oom"].astype(bool), "batch_size"].tolist(),
        # NaN (no slope, no R^2) is written as null: the JSON stays standard
        "fit": {key: None if isinstance(value, float) and math.isnan(value) else value
                for key, value in fit.items()},
        "gpu_memory_gb": gpu_memory_gb, "margin_gb": margin_gb,
        "usable_bytes": (gpu_memory_gb - margin_gb) * GIB,
        "largest_batch": largest_batch(fit, gpu_memory_gb, margin_gb),
        "torch": torch.__version__,
    }
    log.info("%s: memory = %.3g GiB + %.3g MiB x batch (R^2 %.4f, %s); largest batch on %g GiB "
             "(margin %g GiB): %s", arch, fit["intercept_bytes"] / GIB, fit["slope_bytes_per_example"] / MIB,
             fit["r2"], summary["measured_on"], gpu_memory_gb, margin_gb, summary["largest_batch"])
    return table, summary


# --- the table (rule memory_table) ---------------------------------------------------------

def memory_table(summaries: list[dict]) -> pd.DataFrame:
    """One row per model, in the given order, from :func:`probe_memory` summaries
    (``results/analysis/memory/<arch>.json``): model, family, parameters, optimizer
    (:func:`optimizer_label`), device, gpu_model, measured_on, batch_sizes (measured,
    space-separated), oom_batch_sizes, intercept_GiB,
    slope_MiB_per_example, r2 (empty when not defined: two points, or none), gpu_memory_gb,
    margin_gb, largest_batch (empty when the slope is not positive or not defined)."""
    rows = []
    for s in summaries:
        fit = {key: math.nan if value is None else value for key, value in s["fit"].items()}
        rows.append({
            "model": s["arch"], "family": s["family"], "parameters": s["parameters"],
            "optimizer": optimizer_label(s["optimizer"]),
            "device": s["device"], "gpu_model": s["gpu_model"], "measured_on": s["measured_on"],
            "batch_sizes": " ".join(str(b) for b in s["batch_sizes"] if b not in s["oom_batch_sizes"]),
            "oom_batch_sizes": " ".join(str(b) for b in s["oom_batch_sizes"]),
            "intercept_GiB": fit["intercept_bytes"] / GIB,
            "slope_MiB_per_example": fit["slope_bytes_per_example"] / MIB, "r2": fit["r2"],
            "gpu_memory_gb": s["gpu_memory_gb"], "margin_gb": s["margin_gb"],
            "largest_batch": s["largest_batch"],
        })
    table = pd.DataFrame(rows)
    table["largest_batch"] = table["largest_batch"].astype("Int64")
    return table


def optimizer_label(optimizer: dict) -> str:
    """``adam``, ``adamw``, ``sgd`` or ``sgd+momentum``: what decides the state's memory."""
    name = optimizer["optimizer"]
    return "sgd+momentum" if name == "sgd" and optimizer["momentum"] else name


def shown_memory(table: pd.DataFrame) -> pd.DataFrame:
    """Rounded memory table: the trend and the largest batch on the configured GPU."""
    def significant(value, digits=3):
        return "–" if pd.isna(value) else f"{value:.{digits}g}"

    capacity = [f"{g:g} − {m:g}" for g, m in table[["gpu_memory_gb", "margin_gb"]].itertuples(index=False)]
    return pd.DataFrame({
        "model": table["model"], "family": table["family"],
        "parameters": table["parameters"].map("{:,}".format),
        "optimizer": table["optimizer"],
        "measured on": [f"{on} ({gpu})" if gpu else on
                        for on, gpu in table[["measured_on", "gpu_model"]].itertuples(index=False)],
        "batch sizes": table["batch_sizes"],
        "fixed (GiB)": table["intercept_GiB"].map(significant),
        "per example (MiB)": table["slope_MiB_per_example"].map(significant),
        "R²": table["r2"].map(lambda v: "–" if pd.isna(v) else f"{v:.4f}"),
        "GPU − margin (GiB)": capacity,
        "largest batch": table["largest_batch"].map(lambda v: "–" if pd.isna(v) else f"{v:,}"),
    })


def build_memory_table(summaries) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(numbers, shown)`` of the memory table from summary JSON paths."""
    import json
    from pathlib import Path

    numbers = memory_table([json.loads(Path(path).read_text()) for path in summaries])
    return numbers, shown_memory(numbers)
