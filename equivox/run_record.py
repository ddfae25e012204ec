"""The record of a training run, without torch: settings and their fingerprint, the
lineage of a run directory, status, metrics rows, atomic writes, session headers.

Everything here is read by the workflow (config checks, the rule script, the status
summary) as well as by the trainer, so it imports neither torch nor the models.

Lineage: a run directory holds one lineage, identified by the fingerprint of the
settings that determine its result (:func:`settings_fingerprint`: everything but the
budget keys :data:`BUDGET_SETTINGS` and the operational keys
:data:`OPERATIONAL_SETTINGS`). A (re)start whose fingerprint differs from the recorded
one moves the old lineage aside (:func:`supersede`) and trains from scratch; only a
budget or operational change continues the run.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from .atomic import atomic_write, check_injected, write_json

log = logging.getLogger("equivox.train")

EXIT_INTERRUPTED = 75
"""EX_TEMPFAIL: checkpointed on SIGTERM/SIGUSR1; ``--retries`` resubmits, the run resumes."""
EXIT_CODES = {"error": 1, "oom": 3, "cuda_oom": 4, "worker_died": 5, "disk_full": 6,
              "interrupted": EXIT_INTERRUPTED}
"""Exit code of the trainer per final status, so that the supervisor can record the
status when the trainer could not (a full disk fails the status write too)."""
STATUSES = ("running", "complete", "interrupted", "oom", "cuda_oom", "worker_died",
            "disk_full", "killed", "crashed", "error")
OPERATIONAL_SETTINGS = ("num_workers", "keep_checkpoints", "tensorboard")
"""Settings that cannot change a run's result: the workflow keeps them out of
train_model's params and the rule's script reads them from the config."""
BUDGET_SETTINGS = ("max_steps", "max_compute_h")
"""Settings that say how long to train: a change continues the run from its checkpoint."""
METRIC_COLUMNS = (
    "kind", "step", "epoch", "examples_seen", "compute_s", "wall_time_utc", "train_loss",
    "train_accuracy", "val_loss", "val_accuracy", "iterations_per_s", "examples_per_s",
    "data_wait_fraction", "gpu_mem_allocated_peak_bytes", "gpu_mem_reserved_peak_bytes",
    "gpu_model", "host_rss_bytes", "data_wait_s", "model_s", "gpu_util_percent",
)
"""``compute_s``: seconds of the training loop so far (steps and validations, data waits
included); ``data_wait_s``: of those, seconds spent waiting for a training batch;
``model_s = compute_s - data_wait_s``: the model's own time, which the compute budget
(``max_compute_h``) counts and the comparison figures draw; ``gpu_util_percent``: mean
NVML utilisation since the previous ``train`` row (empty without a GPU). The three
seconds columns are cumulative over the lineage, resumes included."""
# columns that depend on the machine and the clock, not on the computation
TIMING_COLUMNS = ("compute_s", "wall_time_utc", "iterations_per_s", "examples_per_s",
                  "data_wait_fraction", "gpu_mem_allocated_peak_bytes",
                  "gpu_mem_reserved_peak_bytes", "gpu_model", "host_rss_bytes", "data_wait_s", "model_s",
                  "gpu_util_percent")
SUPERSEDED = "superseded"
LINEAGE_FILE = "lineage.json"
KEPT_ON_SUPERSEDE = ("settings.yaml", SUPERSEDED)


@dataclass(frozen=True)
class TrainSettings:
    """Everything a training run is made from. No defaults here: the config schema
    (``train`` section) is the only place they live, and :func:`settings_from_config`
    is the one way to build these from the validated config."""
    arch: str
    spec: dict                      # the architecture's entry in the architecture set
    atom_pack: str                  # training split's atom pack (or an origin DB, packed in memory)
    val_views: str
    view_config: dict               # config keys "views" and "origins"
    data: dict                      # config the origin DB and val set were made from
    head: str
    lr: float
    optimizer: str                  # adam | adamw | sgd (equivox.optim)
    weight_decay: float             # coupled L2 (adam, sgd) or decoupled (adamw)
    momentum: float                 # sgd only
    nesterov: bool                  # sgd only
    lr_schedule: str                # constant | cosine | step | plateau
    warmup_steps: int               # linear warm-up to lr, any schedule
    lr_step_every: int | None       # step: steps between decays
    lr_gamma: float                 # step, plateau: decay factor
    plateau_patience: int           # plateau: validations without improvement before a decay
    min_lr: float                   # cosine, plateau: floor
    grad_clip_norm: float | None    # clip the global gradient norm; None = off
    early_stopping_patience: int | None  # validations without improvement before stopping; None = off
    batch_size: int
    max_steps: int | None
    max_compute_h: float | None
    log_every: int
    val_every: int
    checkpoint_every: int
    keep_checkpoints: int
    num_workers: int
    tensorboard: bool               # also write metrics as TensorBoard events (operational)
    seed: int
    epoch_size: int | None          # examples per "epoch"; None = number of training origins
    device: str                     # auto | cpu | cuda
    amp: str                        # none | bf16 | fp16 (autocast on CUDA)
    tf32: bool
    voxelize_on: str                # loader (CPU workers) | device (atoms shipped, images on GPU)
    train_shards: list              # materialised HDF5 shards; empty = on the fly
    deterministic: bool
    code: str                       # equivox.code_version of the training code (workflow-set)


TENSORBOARD_MISSING = ("config train.tensorboard: true but the optional package tensorboard is not installed: "
                       "pip install 'equivox[tensorboard]' (or pip install tensorboard==2.21.0), "
                       "or set train.tensorboard: false")


def tensorboard_available() -> bool:
    """Whether the optional ``tensorboard`` package (config train.tensorboard) can be imported."""
    import importlib.util

    try:
        return importlib.util.find_spec("tensorboard") is not None
    except (ImportError, ValueError):
        return False


WORKFLOW_TRAIN_KEYS = ("architectures", "models", "resources", "max_steps_per_model")
"""Keys of config ``train`` that the workflow reads and a run does not."""


def settings_from_config(train: dict, arch: str, **fields) -> TrainSettings:
    """The settings of architecture ``arch``'s run from a validated config ``train``
    section (defaults filled by the schema) and the ``fields`` the workflow supplies
    (``spec``, ``atom_pack``, ``val_views``, ``view_config``, ``data``,
    ``train_shards``, ``code``). ``max_steps_per_model`` overrides ``max_steps``."""
    values = {k: v for k, v in train.items() if k not in WORKFLOW_TRAIN_KEYS}
    values["max_steps"] = (train["max_steps_per_model"] or {}).get(arch, train["max_steps"])
    return TrainSettings(arch=arch, **values, **fields)


def write_settings(path: Path, settings: dict) -> None:
    """A run's ``settings.yaml`` (TrainSettings fields), written by the rule's script."""
    atomic_write(Path(path), lambda handle: handle.write(yaml.safe_dump(settings, sort_keys=False)))


def read_settings(path: Path) -> TrainSettings:
    """Inverse of :func:`write_settings`."""
    return TrainSettings(**yaml.safe_load(Path(path).read_text()))


def write_run_config(run_dir: Path, settings: TrainSettings, device) -> None:
    """``config.yaml``: the fully resolved settings of this session, their fingerprint, the device."""
    text = yaml.safe_dump({"settings": asdict(settings), "fingerprint": settings_fingerprint(settings),
                           "device": str(device)}, sort_keys=False)
    atomic_write(Path(run_dir) / "config.yaml", lambda handle: handle.write(text))


def result_settings(settings: TrainSettings | dict) -> dict:
    """The settings that determine a run's result (all but budget and operational keys).

    ``max_steps`` is one of them under ``lr_schedule: cosine``, which decays the
    learning rate over ``max_steps``: a longer budget is a different run there, not a
    continuation."""
    values = asdict(settings) if isinstance(settings, TrainSettings) else dict(settings)
    kept = ("max_steps",) if values.get("lr_schedule") == "cosine" else ()
    return {k: v for k, v in values.items()
            if k in kept or k not in (*BUDGET_SETTINGS, *OPERATIONAL_SETTINGS)}


def settings_fingerprint(settings: TrainSettings | dict) -> str:
    """16 hex characters identifying a lineage (sha256 of the result settings as JSON)."""
    text = json.dumps(result_settings(settings), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def settings_diff(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every result setting that differs."""
    old, new = result_settings(old), result_settings(new)
    return [f"{k}: {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}"
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- status --------------------------------------------------------------------------

def set_status(run_dir: Path, status: str, message: str = "", **extra) -> None:
    write_json(Path(run_dir) / "status.json",
               {"status": status, "message": message, "updated_utc": utc_now(), **extra})


def read_status(run_dir: Path) -> dict:
    path = Path(run_dir) / "status.json"
    try:
        return json.loads(path.read_text()) if path.exists() else {"status": "not started"}
    except ValueError:
        return {"status": "unreadable", "message": f"{path} is not valid JSON"}


# --- metrics.csv ---------------------------------------------------------------------

def _valid_row(values: list[str]) -> bool:
    if len(values) != len(METRIC_COLUMNS) or values[0] not in ("train", "val"):
        return False
    try:
        int(values[1])
        return True
    except ValueError:
        return False


def read_metrics(path: Path) -> list[dict]:
    """Rows of a metrics.csv. A torn last row (a write cut short: wrong number of
    fields, or no line end) is dropped with a warning naming the file; any other
    malformed row is an error naming the file and line."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines()
    if not lines:
        return []
    if lines[0].split(",") != list(METRIC_COLUMNS):
        raise ValueError(f"{path}: line 1 is not the metrics header")
    rows = list(csv.reader(lines[1:]))
    torn_last = bool(rows) and (not text.endswith("\n") or not _valid_row(rows[-1]))
    if torn_last:
        log.warning("%s: dropped a torn last row (line %d: %r), written by a process that was cut "
                    "off mid-write", path, len(lines), lines[-1][:80])
        rows = rows[:-1]
    for number, values in enumerate(rows, start=2):
        if not _valid_row(values):
            raise ValueError(f"{path}: line {number} is malformed ({','.join(values)[:80]!r}); "
                             "only a torn last row can be repaired")
    return [dict(zip(METRIC_COLUMNS, values)) for values in rows]


def rewrite_metrics(path: Path, rows: list[dict]) -> None:
    def write(handle):
        writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    atomic_write(Path(path), write)


def append_metrics_row(path: Path, row: dict) -> None:
    """One row, written with a single write() of the whole line (O_APPEND)."""
    check_injected()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    if not Path(path).exists():
        writer.writeheader()
    writer.writerow(row)
    with open(path, "a") as handle:
        handle.write(buffer.getvalue())


# --- lineage -------------------------------------------------------------------------

def read_lineage(run_dir: Path) -> dict | None:
    path = Path(run_dir) / LINEAGE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def write_lineage(run_dir: Path, settings: TrainSettings) -> None:
    write_json(Path(run_dir) / LINEAGE_FILE,
               {"fingerprint": settings_fingerprint(settings), "settings": result_settings(settings),
                "created_utc": utc_now()})


def has_progress(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds anything of a lineage (metrics, checkpoints, final
    weights). An empty ``final/`` is not progress: Snakemake creates it for the rule's
    output before the first session starts."""
    run_dir = Path(run_dir)
    return any((run_dir / name).exists() for name in ("metrics.csv", LINEAGE_FILE)) \
        or any((run_dir / "final").glob("*")) or any((run_dir / "checkpoints").glob("ckpt_*.pt"))


def supersede(run_dir: Path, old_fingerprint: str | None, reason: str) -> Path:
    """Move everything of the current lineage to ``superseded/<UTC time>_<fingerprint>/``
    (kept, never deleted) with a ``reason.txt``; returns that folder."""
    run_dir = Path(run_dir)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = f"{stamp}_{old_fingerprint or 'unrecorded'}"
    target, suffix = run_dir / SUPERSEDED / name, 1
    while target.exists():
        target, suffix = run_dir / SUPERSEDED / f"{name}.{suffix}", suffix + 1
    target.mkdir(parents=True)
    for item in sorted(run_dir.iterdir()):
        if item.name not in KEPT_ON_SUPERSEDE:
            os.replace(item, target / item.name)
    (target / "reason.txt").write_text(reason.rstrip() + "\n")
    return target


# --- the rule log --------------------------------------------------------------------

def newest_checkpoint_step(run_dir: Path) -> int | None:
    """Step of the newest checkpoint file with a checksum sidecar (names only, no read)."""
    steps = [int(p.stem.split("_")[1]) for p in (Path(run_dir) / "checkpoints").glob("ckpt_*.pt")
             if p.with_name(p.name + ".sha256").exists()]
    return max(steps) if steps else None


def session_header(run_dir: Path) -> str:
    """The line that opens each session of a run in its (append-only) log: start time,
    host, process, SLURM job, the checkpoint it will resume from, how the previous
    session ended."""
    previous = read_status(run_dir)
    step = newest_checkpoint_step(run_dir)
    job = os.environ.get("SLURM_JOB_ID")
    ended = previous.get("status", "not started")
    if previous.get("message"):
        ended += f" ({previous['message'][:300]})"
    if previous.get("updated_utc"):
        ended += f" at {previous['updated_utc']}"
    return (f"===== session start {utc_now()} host {socket.gethostname()} pid {os.getpid()}"
            + (f" slurm job {job}" if job else "")
            + f" | resume step: {step if step is not None else 'none (fresh start)'}"
            + f" | previous end: {ended} =====")
