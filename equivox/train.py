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
    final/             weights.pt, best_weights.pt (lowest validation loss), metrics.csv,
                       run.json (with best, stopped_early, stop_reason): written once, at completion
    tensorboard/       the metrics rows as TensorBoard events (config train.tensorboard only)
    superseded/        earlier lineages, moved aside whole when a result setting changed

A (re)start resumes only its own lineage: when a setting that determines the result
differs from the recorded one (everything but max_steps, max_compute_h, num_workers,
keep_checkpoints, tensorboard, and max_steps counts under lr_schedule cosine; the
training code's fingerprint included), the old lineage is moved
to ``superseded/<time>_<fingerprint>/`` with a reason.txt and training starts fresh.

A checkpoint is a plain dict (model, optimizer, learning-rate schedule, best validation
with its weights and the early-stopping count, step, examples seen, compute and
data-wait seconds, every RNG state); optimizer and schedule: :mod:`equivox.optim`.
Example ``i`` of training is a pure function of (seed, i), so resuming at step s
restarts the data at example ``s * batch_size`` and reproduces the same run: on CPU the
weights after a kill-and-resume equal those of an uninterrupted run bit for bit.

SIGTERM / SIGUSR1 (what SLURM sends before a time limit or preemption) make the loop
save a checkpoint at the next step boundary and exit with status ``interrupted``
(exit code 75, EX_TEMPFAIL), so ``--retries`` resubmits and the run continues.

The run directory's files are written and read by :mod:`equivox.run_record` (torch-free)
and :mod:`equivox.run_state` (checkpoints, weights); the process that runs this loop and
records how it ended is :mod:`equivox.train_process`, supervised by :mod:`equivox.supervise`.
"""
from __future__ import annotations

import logging
import os
import random
import re
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.nn.functional import cross_entropy

from .atomic import inject_disk_full, remove_stray_tmp, write_json
from .gpu_monitor import GpuUtilisation
from .optim import LrSchedule, Validations, build_optimizer
from .run_record import (EXIT_INTERRUPTED, METRIC_COLUMNS, TENSORBOARD_MISSING, TrainSettings,
                         append_metrics_row, read_metrics, rewrite_metrics, set_status, settings_fingerprint,
                         tensorboard_available, utc_now, write_run_config)
from .run_state import (gpu_fields, host_rss_bytes, load_weights, record_session, rng_state,
                        save_checkpoint, save_final_weights, set_rng_state, start_lineage,
                        training_device, weights_of)

log = logging.getLogger("equivox.train")

FAULT_ENV = "EQUIVOX_FAULT"
"""Test hook, read by the trainer only: ``step_error@N`` raises in step N,
``enospc@N`` makes every write fail with ENOSPC from step N on (a full disk)."""


def _parse_fault() -> tuple[str, int] | None:
    value = os.environ.get(FAULT_ENV, "")
    match = re.fullmatch(r"(step_error|enospc)@(\d+)", value)
    if value and not match:
        raise ValueError(f"{FAULT_ENV}={value!r}: expected step_error@N or enospc@N")
    return (match.group(1), int(match.group(2))) if match else None


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


@torch.no_grad()
def evaluate(model, loader, device, autocast) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a fixed view set."""
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast():
            logits = model(images)
        loss_sum += cross_entropy(logits.float(), labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
        n += len(labels)
    model.train()
    return loss_sum / n, correct / n


class _Window:
    """Sums over the steps since the last ``train`` metrics row."""

    def __init__(self):
        self.loss, self.correct, self.n, self.wait_s, self.steps = 0.0, 0, 0, 0.0, 0
        self.start = time.perf_counter()

    def add(self, loss: float, correct: int, n: int, wait_s: float) -> None:
        self.loss += loss * n
        self.correct += correct
        self.n += n
        self.wait_s += wait_s
        self.steps += 1

    def row(self) -> dict:
        """The ``train`` row's values, timed up to now."""
        elapsed = time.perf_counter() - self.start
        return dict(train_loss=f"{self.loss / self.n:.6f}", train_accuracy=f"{self.correct / self.n:.6f}",
                    iterations_per_s=f"{self.steps / elapsed:.4f}", examples_per_s=f"{self.n / elapsed:.2f}",
                    data_wait_fraction=f"{self.wait_s / elapsed:.4f}")


class _TensorBoard:
    """The metrics rows as TensorBoard scalars (``<run_dir>/tensorboard/``, tag
    ``<kind>/<column>``; config ``train.tensorboard``). Events from ``purge_step`` on are
    dropped, as metrics.csv drops its rows: those after the checkpoint a run resumes
    from, or all of them on a fresh start."""

    SKIPPED = ("kind", "step", "wall_time_utc", "gpu_model")

    def __init__(self, run_dir: Path, purge_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge_step)

    def add(self, row: dict) -> None:
        for column, value in row.items():
            if column not in self.SKIPPED and value not in ("", None):
                self.scalar(f"{row['kind']}/{column}", float(value), int(row["step"]))
        if row["kind"] == "val":
            self.writer.flush()  # on disk at every validation, not only every 2 minutes

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self.writer.close()


def _data(s: TrainSettings, sampler, view_params, step: int, device: torch.device):
    """(training loader, validation loader, images built on the device?). Example ``i``
    is a pure function of (seed, i): a run resumed at ``step`` starts at example
    ``step * batch_size``."""
    from .views import CollateImages, ShardedViewDataset, ViewPairDataset, ViewSetDataset, collate_atoms

    remaining = (s.max_steps - step) if s.max_steps is not None else 10**9
    examples = dict(epoch_size=max(remaining, 0) * s.batch_size, first_index=step * s.batch_size)
    if s.train_shards:  # images read from HDF5, nothing left to build
        dataset, collate, on_device = ShardedViewDataset(s.train_shards, **examples), None, False
    else:
        dataset, on_device = ViewPairDataset(sampler, **examples), s.voxelize_on == "device"
        collate = collate_atoms if on_device else CollateImages(view_params.image)
    train_loader = torch.utils.data.DataLoader(
        dataset, batch_size=s.batch_size, num_workers=s.num_workers, collate_fn=collate,
        generator=torch.Generator().manual_seed(s.seed),  # the global RNG stays untouched
        pin_memory=device.type == "cuda", persistent_workers=False, worker_init_fn=_ignore_stop_signals,
        prefetch_factor=4 if s.num_workers else None)
    val_loader = torch.utils.data.DataLoader(ViewSetDataset(s.val_views), batch_size=max(s.batch_size, 32),
                                             num_workers=0, generator=torch.Generator().manual_seed(0))
    return train_loader, val_loader, on_device


def train(run_dir: str | Path, settings: TrainSettings, progress: bool | None = None,
          state: dict | None = None) -> dict:
    """Train (or resume) one run. Returns the run summary; raises on failure.

    ``state`` (optional) is kept up to date with ``step`` and the loader's
    ``worker_pids``, for the failure report of :func:`equivox.train_process.run_training`.
    """
    from tqdm import tqdm

    from .escnn_setup import import_escnn
    from .models import build_model, count_parameters
    from .views import ViewPairSampler, ViewParams, images_from_pairs

    s, run_dir = settings, Path(run_dir)
    state = {} if state is None else state
    state.setdefault("step", 0)
    run_dir.mkdir(parents=True, exist_ok=True)
    fault = _parse_fault()
    device = training_device(s.device)
    if s.tensorboard and not tensorboard_available():
        raise RuntimeError(TENSORBOARD_MISSING)
    for path in remove_stray_tmp(run_dir):
        log.warning("removed %s, left by a process killed mid-write", path)
    if device.type == "cuda" and s.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if s.deterministic and device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    import_escnn()  # cache out of site-packages before any model is built

    checkpoint = start_lineage(run_dir, s)
    write_run_config(run_dir, s, device)
    sessions = record_session(run_dir, device)

    view_params = ViewParams.from_config(s.view_config)
    sampler = ViewPairSampler(s.atom_pack, "train", view_params, seed=s.seed)
    epoch_size = s.epoch_size or sum(r["n_origins"] for r in sampler.structures)

    # model and optimizer
    torch.manual_seed(s.seed)
    np.random.seed(s.seed)
    random.seed(s.seed)
    in_channels = len(view_params.image.channels)
    model = build_model(s.arch, s.spec, in_channels=in_channels, head=s.head).to(device)
    optimizer = build_optimizer(model.parameters(), s)
    schedule = LrSchedule(optimizer, s)
    validations = Validations(s.early_stopping_patience)
    scaler = torch.amp.GradScaler("cuda", enabled=s.amp == "fp16" and device.type == "cuda")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(s.amp)
    use_amp = amp_dtype is not None and device.type == "cuda"

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp)

    step, examples_seen, compute_s, data_wait_s = 0, 0, 0.0, 0.0
    if checkpoint is not None:
        load_weights(model, checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        step, examples_seen, compute_s = checkpoint["step"], checkpoint["examples_seen"], checkpoint["compute_s"]
        data_wait_s = checkpoint.get("data_wait_s", 0.0)
        if "lr_schedule" in checkpoint:
            schedule.load_state_dict(checkpoint["lr_schedule"])
            validations.load_state_dict(checkpoint["validations"])
        set_rng_state(checkpoint["rng"])
        log.info("resumed %s from step %d (%.0f compute s so far)", s.arch, step, compute_s)
    state["step"] = step
    metrics_path = run_dir / "metrics.csv"
    # rows after the checkpoint are recomputed; drop them so no step is logged twice (a
    # fresh start recomputes the validation at step 0 too: it counts for the best weights)
    rewrite_metrics(metrics_path, [r for r in read_metrics(metrics_path)
                                   if checkpoint is not None and int(r["step"]) <= step])
    set_status(run_dir, "running", step=step)

    train_loader, val_loader, on_device = _data(s, sampler, view_params, step, device)
    gpu_util = GpuUtilisation(device)
    stop = _StopRequest()
    show_bar = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=s.max_steps, initial=step, unit="step", disable=not show_bar, dynamic_ncols=True)
    board = _TensorBoard(run_dir, step + 1 if checkpoint is not None else 0) if s.tensorboard else None

    def budget_left() -> bool:
        """Steps left, and model time left: compute less data waits (run_record.METRIC_COLUMNS),
        so that a model fed by a slow loader gets the same budget as one that is not."""
        return ((s.max_steps is None or step < s.max_steps)
                and (s.max_compute_h is None or compute_s - data_wait_s < s.max_compute_h * 3600))

    def write_row(kind: str, **values) -> None:
        row = dict.fromkeys(METRIC_COLUMNS, "")
        row.update(kind=kind, step=step, epoch=f"{examples_seen / epoch_size:.6f}", examples_seen=examples_seen,
                   compute_s=f"{compute_s:.3f}", wall_time_utc=utc_now(), host_rss_bytes=host_rss_bytes(),
                   data_wait_s=f"{data_wait_s:.3f}", model_s=f"{compute_s - data_wait_s:.3f}",
                   **gpu_fields(device), **values)
        append_metrics_row(metrics_path, row)
        if board is not None:
            board.add(row)

    def validate() -> None:
        """Evaluate on the validation set (counted as compute), write a ``val`` row,
        and count it for the best weights, early stopping and a plateau schedule."""
        nonlocal compute_s
        t0 = time.perf_counter()
        val_loss, val_acc = evaluate(model, val_loader, device, autocast)
        compute_s += time.perf_counter() - t0
        write_row("val", val_loss=f"{val_loss:.6f}", val_accuracy=f"{val_acc:.6f}")
        validations.add(step, val_loss, val_acc, lambda: weights_of(model))
        if schedule.after_validation(val_loss):
            log.info("%s step %d: no lower validation loss in %d validations; learning rate now %.3g",
                     s.arch, step, s.plateau_patience, schedule.lr_at(step))

    model.train()
    batches = iter(train_loader)
    state["worker_pids"] = [w.pid for w in getattr(batches, "_workers", [])]
    if budget_left() and checkpoint is None:
        validate()
    window = _Window()
    stopping = validations.should_stop() and budget_left()  # a resumed run that had stopped early
    while budget_left() and not stopping:
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
            loss = cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        lr = schedule.apply(step)
        if s.grad_clip_norm is not None:
            scaler.unscale_(optimizer)  # clip the true gradients (fp16: unscaled first)
            torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip_norm)
        scaler.step(optimizer)
        scaler.update()
        step += 1
        state["step"] = step
        if fault == ("step_error", step):
            raise RuntimeError(f"fault injected by {FAULT_ENV} in step {step}")
        if fault == ("enospc", step):
            inject_disk_full()
        examples_seen += len(labels)
        # .item() synchronises: the timings are honest
        window.add(loss.item(), (logits.argmax(1) == labels).sum().item(), len(labels), t_data - t_step)
        compute_s += time.perf_counter() - t_step
        data_wait_s += t_data - t_step
        bar.update(1)

        if step % s.log_every == 0:
            row = window.row()
            write_row("train", **row, gpu_util_percent=gpu_util.window_mean())
            if board is not None:
                board.scalar("train/lr", lr, step)
            bar.set_postfix(loss=row["train_loss"][:5], acc=row["train_accuracy"][:5])
            if not show_bar:
                log.info("%s step %d: loss %s acc %s, %s it/s, data wait %s", s.arch, step, row["train_loss"],
                         row["train_accuracy"], row["iterations_per_s"], row["data_wait_fraction"])
            window = _Window()
        if step % s.val_every == 0 or not budget_left():
            validate()
            stopping = validations.should_stop() and budget_left()
        if step % s.checkpoint_every == 0 or stop.signal or stopping or not budget_left():
            save_checkpoint(run_dir, {
                "model": weights_of(model), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "lr_schedule": schedule.state_dict(), "validations": validations.state_dict(),
                "step": step, "examples_seen": examples_seen, "compute_s": compute_s,
                "data_wait_s": data_wait_s, "rng": rng_state(),
                "settings": asdict(s), "fingerprint": settings_fingerprint(s)}, s.keep_checkpoints)
        if stop.signal:
            if board is not None:
                board.close()
            bar.close()
            set_status(run_dir, "interrupted", f"{stop.signal} received; checkpointed at step {step}", step=step)
            log.warning("%s: %s received, checkpoint saved at step %d; exiting for a resubmission",
                        s.arch, stop.signal, step)
            raise SystemExit(EXIT_INTERRUPTED)
    bar.close()
    gpu_util.close()
    if board is not None:
        board.close()
    del batches  # loader workers end here, not at interpreter exit

    best = validations.best
    if stopping:
        reason = (f"early stopping: {s.early_stopping_patience} consecutive validations without a "
                  f"validation loss below {best['val_loss']:.6f} (step {best['step']})")
        log.info("%s: stopped at step %d, %s", s.arch, step, reason)
    elif s.max_steps is not None and step >= s.max_steps:
        reason = f"max_steps ({s.max_steps}) reached"
    elif budget_left():
        reason = "training examples exhausted"
    else:
        reason = f"max_compute_h ({s.max_compute_h:g} h of model time) reached"
    final = run_dir / "final"
    final.mkdir(exist_ok=True)
    save_final_weights(final / "weights.pt", model, s, in_channels)
    if best is None:  # no validation gave a finite loss: nothing to choose by
        log.warning("%s: no validation with a finite loss; final/best_weights.pt holds the last weights", s.arch)
    save_final_weights(final / "best_weights.pt", model, s, in_channels, weights=validations.best_weights)
    rewrite_metrics(final / "metrics.csv", read_metrics(metrics_path))
    summary = {"arch": s.arch, "status": "complete", "steps": step, "examples_seen": examples_seen,
               "epochs": examples_seen / epoch_size, "compute_s": compute_s,
               "data_wait_s": data_wait_s, "model_s": compute_s - data_wait_s,
               "stopped_early": stopping, "stop_reason": reason, "best": best,
               "parameters": count_parameters(model), "device": str(device),
               "gpu_model": gpu_fields(device)["gpu_model"], "settings": asdict(s),
               "fingerprint": settings_fingerprint(s), "environment": sessions}
    write_json(final / "run.json", summary)
    set_status(run_dir, "complete", step=step)
    return summary
