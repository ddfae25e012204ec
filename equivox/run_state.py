"""What a training run saves and restores, with torch: weights in and out, checkpoints,
RNG state, the device, and the hardware meters of its metrics rows.

The torch-free part of a run's record (status, metrics.csv, lineage, atomic writes) is
:mod:`equivox.run_record`; this module adds what needs torch. The trainer
(:mod:`equivox.train`) and the analyses (:mod:`equivox.evaluate`) both read from here.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write, write_json
from .run_record import (has_progress, read_lineage, result_settings, settings_diff, settings_fingerprint,
                         supersede, write_lineage)

log = logging.getLogger("equivox.train")


def pick_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU."""
    return torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available())
                        else "cpu")


def training_device(device: str) -> torch.device:
    """The training device for config ``train.device``; ``cuda`` on a node without a
    usable GPU fails here, first thing in the job, naming the key (the workflow cannot
    check this when it submits from a CPU login node)."""
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config train.device is 'cuda' but this node has no usable GPU "
                           "(torch.cuda.is_available() is False); allowed: auto, cpu, cuda")
    return pick_device(device)


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


# --- RNG state and meters ------------------------------------------------------------

def host_rss_bytes() -> int:
    import psutil
    proc = psutil.Process()
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total


def gpu_fields(device: torch.device) -> dict:
    if device.type != "cuda":
        return {"gpu_mem_allocated_peak_bytes": "", "gpu_mem_reserved_peak_bytes": "", "gpu_model": ""}
    return {"gpu_mem_allocated_peak_bytes": torch.cuda.max_memory_allocated(device),
            "gpu_mem_reserved_peak_bytes": torch.cuda.max_memory_reserved(device),
            "gpu_model": torch.cuda.get_device_name(device)}


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- the run directory's lineage, sessions and final weights ---------------------------

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


def record_session(run_dir: Path, device: torch.device) -> list[dict]:
    """Append this (re)start's environment to ``environment.json``; returns all sessions."""
    from .provenance import provenance

    path = Path(run_dir) / "environment.json"
    sessions = json.loads(path.read_text())["sessions"] if path.exists() else []
    sessions.append({**provenance(), "device": str(device),
                     "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                     "torch_threads": torch.get_num_threads()})
    write_json(path, {"sessions": sessions})
    return sessions


def save_final_weights(path: Path, model: torch.nn.Module, settings, in_channels: int,
                       weights: dict | None = None) -> None:
    """``final/weights.pt`` (and ``final/best_weights.pt``, same format): the weights
    (:func:`weights_of` of ``model``, or ``weights`` when given: those of the best
    validation) and what rebuilds the model (``arch``, ``spec``, ``head``,
    ``in_channels``); read by :func:`load_trained_model`."""
    weights = weights_of(model) if weights is None else weights
    atomic_write(path, lambda handle: torch.save(
        {"model": weights, "arch": settings.arch, "spec": settings.spec, "head": settings.head,
         "in_channels": in_channels}, handle), binary=True)


def load_trained_model(weights_path: str | Path,
                       device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a run's model from ``final/weights.pt`` or ``final/best_weights.pt``
    (eval mode, on ``device``).

    Returns the model and what else the file records (``arch``, ``spec``, ``head``,
    ``in_channels``).
    """
    from .models import build_model

    saved = torch.load(weights_path, map_location="cpu", weights_only=False)
    state = saved.pop("model")
    model = build_model(saved["arch"], saved["spec"], saved["in_channels"], saved["head"])
    load_weights(model, state)  # weights.pt leaves out what the architecture determines
    return model.to(device).eval(), saved
