"""Train one architecture on the neighbour-location task, resumably.

One run directory per model (``results/runs/<arch>/``)::

    status.json        running | complete | interrupted | oom | cuda_oom | worker_died |
                       disk_full | killed | crashed | error   (+ message, step)
    settings.yaml      the settings of this session (written by the rule)
    lineage.json       fingerprint + settings that determine the result of this lineage
    config.yaml        the fully resolved settings of this run
    environment.json   packages, git commit, host, GPU of every (re)start
    metrics.csv        one row per logging window ("train") and per validation ("val")
    checkpoints/       ckpt_<step>.pt + .sha256; the newest valid one is resumed
    final/             weights.pt, metrics.csv, run.json: written once, at completion
    superseded/        earlier lineages, moved aside whole when a result setting changed

A (re)start resumes only its own lineage: when a setting that determines the result
differs from the recorded one (everything but max_steps, max_compute_h, num_workers,
keep_checkpoints; the training code's fingerprint included), the old lineage is moved
to ``superseded/<time>_<fingerprint>/`` with a reason.txt and training starts fresh.

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
import errno
import hashlib
import json
import logging
import os
import random
import re
import signal
import sys
import time
import traceback
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import yaml

from .run_record import (BUDGET_SETTINGS, EXIT_CODES, EXIT_INTERRUPTED, METRIC_COLUMNS,  # noqa: F401
                         OPERATIONAL_SETTINGS, TIMING_COLUMNS, TrainSettings, append_metrics_row,
                         atomic_write, has_progress, inject_disk_full, read_lineage, read_metrics,
                         read_status, remove_stray_tmp, result_settings, rewrite_metrics,
                         set_status, settings_diff, settings_fingerprint, supersede, write_json,
                         write_lineage)
from .supervise import supervise  # noqa: F401  (re-exported: python -m equivox.train's supervisor)

log = logging.getLogger("equivox.train")

FAULT_ENV = "EQUIVOX_FAULT"
"""Test hook, read by the trainer only: ``step_error@N`` raises in step N,
``enospc@N`` makes every write fail with ENOSPC from step N on (a full disk)."""


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
    """Atomic write (temporary file removed on failure) + checksum sidecar; older
    checkpoints beyond ``keep`` are removed."""
    folder = run_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ckpt_{state['step']:08d}.pt"
    atomic_write(path, lambda handle: torch.save(state, handle), binary=True)
    digest = _sha256(path)
    atomic_write(folder / f"{path.name}.sha256", lambda handle: handle.write(digest))
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


_read_metrics = read_metrics
_rewrite_metrics = rewrite_metrics


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


def _check_device(s: TrainSettings) -> torch.device:
    """The training device; ``device: cuda`` on a node without a usable GPU fails here,
    first thing in the job, naming the key (the workflow cannot check this when it
    submits from a CPU login node)."""
    from .evaluate import pick_device

    if s.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config train.device is 'cuda' but this node has no usable GPU "
                           "(torch.cuda.is_available() is False); allowed: auto, cpu, cuda")
    return pick_device(s.device)


def _parse_fault() -> tuple[str, int] | None:
    value = os.environ.get(FAULT_ENV, "")
    match = re.fullmatch(r"(step_error|enospc)@(\d+)", value)
    if value and not match:
        raise ValueError(f"{FAULT_ENV}={value!r}: expected step_error@N or enospc@N")
    return (match.group(1), int(match.group(2))) if match else None


def start_lineage(run_dir: Path, s: TrainSettings) -> dict | None:
    """Resume only the lineage these settings belong to.

    Returns the checkpoint to resume (None = start fresh). When the settings that
    determine the result differ from the run's recorded ones, the old lineage is moved
    to ``superseded/`` (kept) and logged with the keys that changed; only budget and
    operational keys continue a run.
    """
    fingerprint = settings_fingerprint(s)
    recorded = read_lineage(run_dir)
    checkpoint = load_latest_checkpoint(run_dir)
    if recorded is None and checkpoint is not None and "settings" in checkpoint:
        recorded = {"fingerprint": settings_fingerprint(checkpoint["settings"]),
                    "settings": result_settings(checkpoint["settings"])}  # before lineage.json
    if recorded is not None and checkpoint is not None \
            and checkpoint.get("fingerprint", recorded["fingerprint"]) != recorded["fingerprint"]:
        recorded = {"fingerprint": checkpoint["fingerprint"], "settings": result_settings(checkpoint["settings"])}
    reason = None
    if recorded is not None and recorded["fingerprint"] != fingerprint:
        reason = ("settings that determine the result changed:\n  "
                  + "\n  ".join(settings_diff(recorded["settings"], asdict(s))))
    elif recorded is None and has_progress(run_dir):
        reason = "earlier progress without a record of its settings"
    if reason is not None:
        target = supersede(run_dir, recorded and recorded["fingerprint"], reason)
        log.warning("%s: not resuming; %s\nprevious lineage moved to %s; training from scratch",
                    s.arch, reason, target)
        checkpoint = None
    if read_lineage(run_dir) is None or reason is not None:
        write_lineage(run_dir, s)
    return checkpoint


def train(run_dir: str | Path, settings: TrainSettings, progress: bool | None = None,
          state: dict | None = None) -> dict:
    """Train (or resume) one run. Returns the run summary; raises on failure.

    ``state`` (optional) is kept up to date with ``step`` and the loader's
    ``worker_pids``, for the failure report of :func:`run_training`.
    """
    from .escnn_setup import import_escnn
    from .models import build_model, count_parameters
    from .provenance import provenance
    from .views import (CollateImages, ViewPairDataset, ViewPairSampler, ViewParams,
                        ShardedViewDataset, ViewSetDataset, collate_atoms,
                        images_from_pairs)

    state = {} if state is None else state
    state.setdefault("step", 0)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    s = settings
    fault = _parse_fault()
    device = _check_device(s)
    for path in remove_stray_tmp(run_dir):
        log.warning("removed %s, left by a process killed mid-write", path)
    if device.type == "cuda" and s.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if s.deterministic and device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    import_escnn()  # cache out of site-packages before any model is built

    checkpoint = start_lineage(run_dir, s)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(
        {"settings": asdict(s), "fingerprint": settings_fingerprint(s), "device": str(device)},
        sort_keys=False))
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
    if checkpoint is not None:
        load_weights(model, checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        step, examples_seen, compute_s = checkpoint["step"], checkpoint["examples_seen"], checkpoint["compute_s"]
        _set_rng_state(checkpoint["rng"])
        log.info("resumed %s from step %d (%.0f compute s so far)", s.arch, step, compute_s)
    state["step"] = step
    # rows after the checkpoint are recomputed; drop them so no step is logged twice
    rewrite_metrics(metrics_path, [r for r in read_metrics(metrics_path) if int(r["step"]) <= step])
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
                "settings": asdict(s), "fingerprint": settings_fingerprint(s)}

    def write_row(kind: str, **values) -> None:
        row = {c: "" for c in METRIC_COLUMNS}
        row.update(kind=kind, step=step, epoch=f"{examples_seen / epoch_size:.6f}", examples_seen=examples_seen,
                   compute_s=f"{compute_s:.3f}", wall_time_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   host_rss_bytes=_host_rss_bytes(), **_gpu_fields(device), **values)
        append_metrics_row(metrics_path, row)

    window = {"loss": 0.0, "correct": 0, "n": 0, "wait_s": 0.0, "start": time.perf_counter(), "steps": 0}
    model.train()
    batches = iter(train_loader)
    state["worker_pids"] = [w.pid for w in getattr(batches, "_workers", [])]
    if budget_left() and step == 0 and not read_metrics(metrics_path):
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
        state["step"] = step
        if fault == ("step_error", step):
            raise RuntimeError(f"fault injected by {FAULT_ENV} in step {step}")
        if fault == ("enospc", step):
            inject_disk_full()
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
    del batches  # loader workers end here, not at interpreter exit

    final = run_dir / "final"
    final.mkdir(exist_ok=True)
    atomic_write(final / "weights.pt", lambda handle: torch.save(
        {"model": weights_of(model), "arch": s.arch, "spec": s.spec, "head": s.head,
         "in_channels": len(view_params.image.channels)}, handle), binary=True)
    rows = read_metrics(metrics_path)
    rewrite_metrics(final / "metrics.csv", rows)
    summary = {"arch": s.arch, "status": "complete", "steps": step, "examples_seen": examples_seen,
               "epochs": examples_seen / epoch_size, "compute_s": compute_s, "parameters": n_params,
               "device": str(device), "gpu_model": _gpu_fields(device)["gpu_model"],
               "settings": asdict(s), "fingerprint": settings_fingerprint(s), "environment": sessions}
    write_json(final / "run.json", summary)
    set_status(run_dir, "complete", step=step)
    return summary


# --- a status for every way a run can end ---------------------------------------------

WORKER_DEATH = re.compile(r"DataLoader worker \(pids?(?:\(s\))? ([\d, ]+)\) (exited unexpectedly|is killed by signal: ?([^.]*))")


def classify_failure(exc: BaseException, state: dict | None = None) -> tuple[str, str]:
    """(status, message) for an exception that ended a run; the message names the
    loader worker (index and pid) when one died."""
    text = f"{type(exc).__name__}: {str(exc)[:2000]}"
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "cuda_oom", text
    death = WORKER_DEATH.search(str(exc))
    if death:
        pids = [int(p) for p in re.findall(r"\d+", death.group(1))]
        known = (state or {}).get("worker_pids", [])
        who = ", ".join(f"worker {known.index(p)} of {len(known)} (pid {p})" if p in known else f"pid {p}"
                        for p in pids)
        how = f"killed by signal {death.group(3).strip()}" if death.group(3) else "exited unexpectedly"
        hint = " (host out-of-memory killer?)" if "Killed" in (death.group(3) or "") else ""
        return "worker_died", f"DataLoader {who} {how}{hint}: {text}"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full", text
    if isinstance(exc, MemoryError) or "DefaultCPUAllocator" in text or "not enough memory" in text:
        return "oom", text
    return "error", text


def run_training(run_dir: Path, settings: TrainSettings, progress: bool | None = None) -> dict:
    """train() with the outcome written to status.json before any exception propagates.

    The exception gets an attribute ``equivox_status``. When the status itself cannot
    be written (a full disk), that is logged and the trainer's exit code
    (:data:`EXIT_CODES`) tells the supervisor, which records it.
    """
    state: dict = {}
    try:
        return train(run_dir, settings, progress=progress, state=state)
    except SystemExit:
        raise
    except BaseException as exc:
        status, message = classify_failure(exc, state)
        exc.equivox_status = status
        log.error("%s: %s at step %s: %s\n%s", settings.arch, status, state.get("step", 0), message,
                  traceback.format_exc())
        try:
            set_status(run_dir, status, message, step=state.get("step", 0))
        except BaseException as err:
            log.error("could not write %s/status.json (%s: %s); the supervisor records the status",
                      run_dir, type(err).__name__, err)
        raise


def load_settings(path: str | Path) -> TrainSettings:
    return TrainSettings(**yaml.safe_load(Path(path).read_text()))


def _exit_now(code: int) -> None:
    """End the trainer at once: loader workers (which ignore SIGTERM) are killed rather
    than joined, so no failure can leave the job hanging at interpreter exit."""
    import psutil
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        for child in psutil.Process().children(recursive=True):
            try:
                child.kill()
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    os._exit(code)


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
    code = 0
    try:
        run_training(Path(args.run_dir), load_settings(args.settings), progress=progress)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:
        code = EXIT_CODES.get(getattr(exc, "equivox_status", "error"), 1)
        if not hasattr(exc, "equivox_status"):  # failed before training began (settings file)
            log.error("failed before training:\n%s", traceback.format_exc())
    _exit_now(code)


if __name__ == "__main__":
    main()
