"""Train one architecture on the neighbour-location task, resumably.

One run directory per model (``results/runs/<arch>/``)::

    status.json        running | complete | interrupted | oom | cuda_oom | killed | error
    config.yaml        the fully resolved settings of this run
    environment.json   packages, git commit, host, GPU of every (re)start
    metrics.csv        one row per logging window ("train") and per validation ("val")
    checkpoints/       ckpt_<step>.pt + .sha256; the newest valid one is resumed
    final/             weights.pt, metrics.csv, run.json: written once, at completion

A checkpoint is a plain dict (model, optimizer, step, examples seen, compute seconds,
every RNG state). Example ``i`` of training is a pure function of (seed, i), so resuming
at step s restarts the data at example ``s * batch_size`` and reproduces the same run:
on CPU the weights after a kill-and-resume equal those of an uninterrupted run bit for bit.

SIGTERM / SIGUSR1 (what SLURM sends before a time limit or preemption) make the loop
save a checkpoint at the next step boundary and exit with status ``interrupted``
(exit code 75, EX_TEMPFAIL), so ``--retries`` resubmits and the run continues.

Run as ``python -m equivox.train --run-dir DIR --settings FILE`` (see --help).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import yaml

log = logging.getLogger("equivox.train")

EXIT_INTERRUPTED = 75
OPERATIONAL_SETTINGS = ("num_workers", "keep_checkpoints")
"""Settings that cannot change a run's result: the workflow keeps them out of
train_model's params (a changed param retrains) and the rule's script reads them
from the config."""
METRIC_COLUMNS = (
    "kind", "step", "epoch", "examples_seen", "compute_s", "wall_time_utc", "train_loss",
    "train_accuracy", "val_loss", "val_accuracy", "iterations_per_s", "examples_per_s",
    "data_wait_fraction", "gpu_mem_allocated_peak_bytes", "gpu_mem_reserved_peak_bytes",
    "gpu_model", "host_rss_bytes",
)
# columns that depend on the machine and the clock, not on the computation
TIMING_COLUMNS = ("compute_s", "wall_time_utc", "iterations_per_s", "examples_per_s",
                  "data_wait_fraction", "gpu_mem_allocated_peak_bytes",
                  "gpu_mem_reserved_peak_bytes", "gpu_model", "host_rss_bytes")


@dataclass(frozen=True)
class TrainSettings:
    arch: str
    spec: dict                      # the architecture's entry in the architecture set
    origin_db: str
    val_views: str
    view_config: dict               # config keys "views" and "origins"
    head: str = "mlp"
    lr: float = 1e-3
    batch_size: int = 16
    max_steps: int | None = 200
    max_compute_h: float | None = None
    log_every: int = 10
    val_every: int = 50
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    num_workers: int = 2
    seed: int = 0
    epoch_size: int | None = None   # examples per "epoch"; None = number of training origins
    device: str = "auto"            # auto | cpu | cuda
    amp: str = "none"               # none | bf16 | fp16 (autocast on CUDA)
    tf32: bool = True
    voxelize_on: str = "loader"     # loader (CPU workers) | device (atoms shipped, images on GPU)
    train_shards: list = field(default_factory=list)  # materialised HDF5 shards; empty = on the fly
    deterministic: bool = True

    def __post_init__(self):
        if self.max_steps is None and self.max_compute_h is None:
            raise ValueError("train: set max_steps or max_compute_h (or both)")
        if self.checkpoint_every % self.log_every or self.val_every % self.log_every:
            raise ValueError("train: checkpoint_every and val_every must be multiples of log_every "
                             f"(got {self.checkpoint_every}, {self.val_every}, {self.log_every})")
        for name, allowed in (("amp", {"none", "bf16", "fp16"}), ("voxelize_on", {"loader", "device"}),
                              ("device", {"auto", "cpu", "cuda"})):
            if getattr(self, name) not in allowed:
                raise ValueError(f"train.{name} must be one of {sorted(allowed)}, got {getattr(self, name)!r}")


# --- run directory -----------------------------------------------------------------

def write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def set_status(run_dir: Path, status: str, message: str = "", **extra) -> None:
    write_json(Path(run_dir) / "status.json",
               {"status": status, "message": message,
                "updated_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra})


def read_status(run_dir: Path) -> dict:
    path = Path(run_dir) / "status.json"
    return json.loads(path.read_text()) if path.exists() else {"status": "not started"}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


ESCNN_DERIVED = ("sampled_basis", "bias_expansion", "filter", "matrix", "expanded_bias")
"""Buffers of escnn modules that the architecture and the weights determine: the sampled
filter bases (exact Clebsch-Gordan coefficients, docs/install.md; tens of MB each) and
the filters and biases expanded from the weights, which escnn registers at init and in
eval mode and drops in train mode."""


def _derived_key(key: str, modules: dict) -> bool:
    prefix, _, name = key.rpartition(".")
    module = modules.get(prefix)
    return name in ESCNN_DERIVED and module is not None and type(module).__module__.startswith("escnn.")


def weights_of(model: torch.nn.Module) -> dict:
    """The model's state without tensors the architecture itself determines."""
    modules = dict(model.named_modules(remove_duplicate=False))
    return {k: v for k, v in model.state_dict().items() if not _derived_key(k, modules)}


def load_weights(model: torch.nn.Module, weights: dict) -> None:
    """Inverse of :func:`weights_of`, whatever mode ``model`` is in (escnn's expanded
    filters are rebuilt from the loaded weights); anything else missing or unexpected
    is an error."""
    was_training = model.training
    model.train()  # escnn drops its expanded filters; eval() below rebuilds them
    modules = dict(model.named_modules(remove_duplicate=False))
    missing, unexpected = model.load_state_dict(
        {k: v for k, v in weights.items() if not _derived_key(k, modules)}, strict=False)
    missing = [k for k in missing if not _derived_key(k, modules)]
    if missing or unexpected:
        raise RuntimeError(f"weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.train(was_training)


def save_checkpoint(run_dir: Path, state: dict, keep: int) -> Path:
    """Atomic write + checksum sidecar; older checkpoints beyond ``keep`` are removed."""
    folder = run_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ckpt_{state['step']:08d}.pt"
    tmp = folder / f".{path.name}.tmp"
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    digest = _sha256(tmp)
    os.replace(tmp, path)
    (folder / f"{path.name}.sha256").write_text(digest)
    for old in sorted(folder.glob("ckpt_*.pt"))[:-keep]:
        old.unlink()
        old.with_name(old.name + ".sha256").unlink(missing_ok=True)
    return path


def load_latest_checkpoint(run_dir: Path) -> dict | None:
    """Newest checkpoint whose checksum matches; corrupt ones are reported and skipped."""
    for path in sorted((run_dir / "checkpoints").glob("ckpt_*.pt"), reverse=True):
        sidecar = path.with_name(path.name + ".sha256")
        if not sidecar.exists() or sidecar.read_text().strip() != _sha256(path):
            log.warning("checkpoint %s is incomplete or corrupt (checksum mismatch); trying an older one", path)
            continue
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # a file that matches its checksum but cannot be read
            log.warning("checkpoint %s cannot be loaded (%s); trying an older one", path, err)
    return None


def _read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _rewrite_metrics(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


# --- measuring -----------------------------------------------------------------------

def _host_rss_bytes() -> int:
    import psutil
    proc = psutil.Process()
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total


def _gpu_fields(device: torch.device) -> dict:
    if device.type != "cuda":
        return {"gpu_mem_allocated_peak_bytes": "", "gpu_mem_reserved_peak_bytes": "", "gpu_model": ""}
    return {"gpu_mem_allocated_peak_bytes": torch.cuda.max_memory_allocated(device),
            "gpu_mem_reserved_peak_bytes": torch.cuda.max_memory_reserved(device),
            "gpu_model": torch.cuda.get_device_name(device)}


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@torch.no_grad()
def evaluate(model, loader, device, autocast) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a fixed view set."""
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast():
            logits = model(images)
        loss_sum += torch.nn.functional.cross_entropy(logits.float(), labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
        n += len(labels)
    model.train()
    return loss_sum / n, correct / n


# --- the loop ------------------------------------------------------------------------

class _StopRequest:
    """Remembers SIGTERM/SIGUSR1 so the loop can checkpoint at a step boundary."""

    def __init__(self):
        self.signal = None
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers ignore SIGTERM/SIGUSR1: SLURM signals every process of the job
    step, and a worker killed by it would end the run with an error instead of the
    checkpoint the main process writes on the same signal."""
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)


def train(run_dir: str | Path, settings: TrainSettings, progress: bool | None = None) -> dict:
    """Train (or resume) one run. Returns the run summary; raises on failure."""
    from .escnn_setup import import_escnn
    from .evaluate import pick_device
    from .models import build_model, count_parameters
    from .provenance import provenance
    from .views import (CollateImages, ViewPairDataset, ViewPairSampler, ViewParams,
                        ShardedViewDataset, ViewSetDataset, collate_atoms,
                        images_from_pairs)

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    s = settings
    device = pick_device(s.device)
    if device.type == "cuda" and s.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if s.deterministic and device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    import_escnn()  # cache out of site-packages before any model is built

    (run_dir / "config.yaml").write_text(yaml.safe_dump(
        {"settings": asdict(s), "device": str(device)}, sort_keys=False))
    env_path = run_dir / "environment.json"
    sessions = json.loads(env_path.read_text())["sessions"] if env_path.exists() else []
    sessions.append({**provenance(), "device": str(device),
                     "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                     "torch_threads": torch.get_num_threads()})
    write_json(env_path, {"sessions": sessions})

    view_params = ViewParams.from_config(s.view_config)
    sampler = ViewPairSampler(s.origin_db, "train", view_params, seed=s.seed)
    epoch_size = s.epoch_size or sum(r["n_origins"] for r in sampler.structures)

    torch.manual_seed(s.seed)
    np.random.seed(s.seed)
    random.seed(s.seed)
    model = build_model(s.arch, s.spec, in_channels=len(view_params.image.channels), head=s.head).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=s.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=s.amp == "fp16" and device.type == "cuda")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(s.amp)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype and device.type == "cuda" \
        else (lambda: torch.autocast(device.type, enabled=False))

    step, examples_seen, compute_s = 0, 0, 0.0
    metrics_path = run_dir / "metrics.csv"
    checkpoint = load_latest_checkpoint(run_dir)
    if checkpoint is not None:
        load_weights(model, checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        step, examples_seen, compute_s = checkpoint["step"], checkpoint["examples_seen"], checkpoint["compute_s"]
        _set_rng_state(checkpoint["rng"])
        log.info("resumed %s from step %d (%.0f compute s so far)", s.arch, step, compute_s)
    # rows after the checkpoint are recomputed; drop them so no step is logged twice
    _rewrite_metrics(metrics_path, [r for r in _read_metrics(metrics_path) if int(r["step"]) <= step])
    set_status(run_dir, "running", step=step)

    loader_seed = torch.Generator().manual_seed(s.seed)  # the global RNG stays untouched
    remaining = (s.max_steps - step) if s.max_steps is not None else 10**9
    examples = dict(epoch_size=max(remaining, 0) * s.batch_size, first_index=step * s.batch_size)
    if s.train_shards:  # images read from HDF5, nothing left to build
        dataset, collate, on_device = ShardedViewDataset(s.train_shards, **examples), None, False
    else:
        dataset, on_device = ViewPairDataset(sampler, **examples), s.voxelize_on == "device"
        collate = collate_atoms if on_device else CollateImages(view_params.image)
    train_loader = torch.utils.data.DataLoader(
        dataset, batch_size=s.batch_size, num_workers=s.num_workers, collate_fn=collate, generator=loader_seed,
        pin_memory=device.type == "cuda", persistent_workers=False, worker_init_fn=_ignore_stop_signals,
        prefetch_factor=4 if s.num_workers else None)
    val_loader = torch.utils.data.DataLoader(ViewSetDataset(s.val_views), batch_size=max(s.batch_size, 32),
                                             num_workers=0, generator=torch.Generator().manual_seed(0))
    n_params = count_parameters(model)
    stop = _StopRequest()
    show_bar = sys.stderr.isatty() if progress is None else progress
    from tqdm import tqdm
    bar = tqdm(total=s.max_steps, initial=step, unit="step", disable=not show_bar, dynamic_ncols=True)

    def budget_left() -> bool:
        return ((s.max_steps is None or step < s.max_steps)
                and (s.max_compute_h is None or compute_s < s.max_compute_h * 3600))

    def checkpoint_state() -> dict:
        return {"model": weights_of(model), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "step": step, "examples_seen": examples_seen, "compute_s": compute_s, "rng": _rng_state(),
                "settings": asdict(s)}

    def write_row(kind: str, **values) -> None:
        row = {c: "" for c in METRIC_COLUMNS}
        row.update(kind=kind, step=step, epoch=f"{examples_seen / epoch_size:.6f}", examples_seen=examples_seen,
                   compute_s=f"{compute_s:.3f}", wall_time_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   host_rss_bytes=_host_rss_bytes(), **_gpu_fields(device), **values)
        new = not metrics_path.exists()
        with open(metrics_path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row)

    window = {"loss": 0.0, "correct": 0, "n": 0, "wait_s": 0.0, "start": time.perf_counter(), "steps": 0}
    model.train()
    batches = iter(train_loader)
    if budget_left() and step == 0 and not _read_metrics(metrics_path):
        t0 = time.perf_counter()
        val_loss, val_acc = evaluate(model, val_loader, device, autocast)
        compute_s += time.perf_counter() - t0
        write_row("val", val_loss=f"{val_loss:.6f}", val_accuracy=f"{val_acc:.6f}")
    while budget_left():
        t_step = time.perf_counter()
        try:
            inputs, labels = next(batches)
        except StopIteration:
            break
        t_data = time.perf_counter()
        if on_device:
            inputs = images_from_pairs(inputs, len(labels), view_params.image, device=device)
        inputs, labels = inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast():
            logits = model(inputs)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        step += 1
        examples_seen += len(labels)
        window["loss"] += loss.item() * len(labels)  # .item() synchronises: timings are honest
        window["correct"] += (logits.argmax(1) == labels).sum().item()
        window["n"] += len(labels)
        window["wait_s"] += t_data - t_step
        window["steps"] += 1
        compute_s += time.perf_counter() - t_step
        bar.update(1)
        if step % s.log_every == 0:
            elapsed = time.perf_counter() - window["start"]
            write_row("train", train_loss=f"{window['loss'] / window['n']:.6f}",
                      train_accuracy=f"{window['correct'] / window['n']:.6f}",
                      iterations_per_s=f"{window['steps'] / elapsed:.4f}",
                      examples_per_s=f"{window['n'] / elapsed:.2f}",
                      data_wait_fraction=f"{window['wait_s'] / elapsed:.4f}")
            bar.set_postfix(loss=f"{window['loss'] / window['n']:.3f}", acc=f"{window['correct'] / window['n']:.3f}")
            if not show_bar:
                log.info("%s step %d: loss %.4f acc %.3f, %.2f it/s, data wait %.0f%%", s.arch, step,
                         window["loss"] / window["n"], window["correct"] / window["n"],
                         window["steps"] / elapsed, 100 * window["wait_s"] / elapsed)
            window.update(loss=0.0, correct=0, n=0, wait_s=0.0, start=time.perf_counter(), steps=0)
        if step % s.val_every == 0 or not budget_left():
            t0 = time.perf_counter()
            val_loss, val_acc = evaluate(model, val_loader, device, autocast)
            compute_s += time.perf_counter() - t0
            write_row("val", val_loss=f"{val_loss:.6f}", val_accuracy=f"{val_acc:.6f}")
        if step % s.checkpoint_every == 0 or stop.signal or not budget_left():
            save_checkpoint(run_dir, checkpoint_state(), s.keep_checkpoints)
        if stop.signal:
            bar.close()
            set_status(run_dir, "interrupted", f"{stop.signal} received; checkpointed at step {step}", step=step)
            log.warning("%s: %s received, checkpoint saved at step %d; exiting for a resubmission",
                        s.arch, stop.signal, step)
            raise SystemExit(EXIT_INTERRUPTED)
    bar.close()

    final = run_dir / "final"
    final.mkdir(exist_ok=True)
    torch.save({"model": weights_of(model), "arch": s.arch, "spec": s.spec, "head": s.head,
                "in_channels": len(view_params.image.channels)}, final / "weights.pt")
    rows = _read_metrics(metrics_path)
    _rewrite_metrics(final / "metrics.csv", rows)
    summary = {"arch": s.arch, "status": "complete", "steps": step, "examples_seen": examples_seen,
               "epochs": examples_seen / epoch_size, "compute_s": compute_s, "parameters": n_params,
               "device": str(device), "gpu_model": _gpu_fields(device)["gpu_model"],
               "settings": asdict(s), "environment": sessions}
    write_json(final / "run.json", summary)
    set_status(run_dir, "complete", step=step)
    return summary


# --- supervision: a status for every way a run can end --------------------------------

def classify_failure(exc: BaseException) -> str:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "cuda_oom"
    text = str(exc)
    if isinstance(exc, MemoryError) or "DefaultCPUAllocator" in text or "not enough memory" in text:
        return "oom"
    return "error"


def run_training(run_dir: Path, settings: TrainSettings, progress: bool | None = None) -> dict:
    """train() with the outcome written to status.json before any exception propagates."""
    try:
        return train(run_dir, settings, progress=progress)
    except SystemExit:
        raise
    except BaseException as exc:
        status = classify_failure(exc)
        set_status(run_dir, status, f"{type(exc).__name__}: {str(exc)[:2000]}",
                   step=(load_latest_checkpoint(run_dir) or {}).get("step", 0))
        raise


def supervise(run_dir: str | Path, settings_path: str | Path) -> int:
    """Run training in a child process; record a status even if it is killed.

    Forwards SIGTERM/SIGUSR1/SIGINT to the child. Returns the child's exit code.
    """
    run_dir = Path(run_dir)
    child = subprocess.Popen([sys.executable, "-m", "equivox.train", "--run-dir", str(run_dir),
                              "--settings", str(settings_path)])
    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: child.send_signal(signum))
    code = child.wait()
    if code < 0 and read_status(run_dir).get("status") == "running":
        name = signal.Signals(-code).name
        hint = " (host out-of-memory killer, scancel, or node failure)" if name == "SIGKILL" else ""
        set_status(run_dir, "killed", f"training process killed by {name}{hint}")
    return code


def load_settings(path: str | Path) -> TrainSettings:
    return TrainSettings(**yaml.safe_load(Path(path).read_text()))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m equivox.train", description=__doc__.split("\n\n")[0],
        epilog="The settings file is written by the train_model rule (results/runs/<arch>/settings.yaml).")
    parser.add_argument("--run-dir", required=True, help="the run directory (created or resumed)")
    parser.add_argument("--settings", required=True, help="YAML file with TrainSettings fields")
    parser.add_argument("--progress", choices=["auto", "bar", "log"], default="auto",
                        help="progress bar, log lines, or bar only when attached to a terminal")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    progress = {"auto": None, "bar": True, "log": False}[args.progress]
    run_training(Path(args.run_dir), load_settings(args.settings), progress=progress)


if __name__ == "__main__":
    main()
