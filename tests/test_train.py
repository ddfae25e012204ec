"""Training runs on CPU: records, exact resume after SIGKILL, checkpoint fallback, statuses."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml

from equivox.config import FillingValidator, load_schema
from equivox.run_record import TIMING_COLUMNS, read_metrics, settings_from_config
from equivox.run_state import load_latest_checkpoint
from equivox.supervise import supervise
from equivox.train_process import run_training

TINY = {"family": "plain_cnn", "layout": "arch_3", "width": 2, "repeats": 1,
        "head_channels": [16], "head_dropout": 0.2}
VIEW_CONFIG = {"views": {"length_voxels": 21, "resolution_A": 0.75, "channels": ["C", "N", "O", "*"],
                         "default_radius_A": 0.375, "element_radii_A": {}, "padding_A": 0.0,
                         "structure_weighting": "origins", "max_retries": 100,
                         "require_all_faces": False},
               "origins": {"radius_A": 5.0, "min_nearby_atoms": 25, "exclude_hydrogens": True}}


@pytest.fixture(scope="module")
def val_views(small_db, tmp_path_factory):
    from equivox.views import ViewPairSampler, ViewParams, write_view_set
    path = tmp_path_factory.mktemp("views") / "val.h5"
    sampler = ViewPairSampler(small_db, "val", ViewParams.from_config(VIEW_CONFIG), seed=0)
    write_view_set(path, sampler, 24, progress=False)
    return path


def settings(small_db, val_views, **overrides):
    """A tiny run's settings: the schema's defaults of config ``train``, these values on top."""
    train = {}
    FillingValidator(load_schema("config")["properties"]["train"]).validate(train)
    base = dict(batch_size=4, max_steps=12, log_every=2, val_every=4, checkpoint_every=4, num_workers=1, seed=7)
    train.update({k: v for k, v in {**base, **overrides}.items() if k in train})
    fields = dict(spec=TINY, atom_pack=str(small_db), val_views=str(val_views), view_config=VIEW_CONFIG,
                  data={}, train_shards=[], code="")
    fields.update({k: v for k, v in overrides.items() if k in fields})
    return settings_from_config(train, "tiny", **fields)


def rows(run_dir, kind=None):
    with open(Path(run_dir) / "metrics.csv", newline="") as handle:
        return [r for r in csv.DictReader(handle) if kind is None or r["kind"] == kind]


def without_timing(row):
    return {k: v for k, v in row.items() if k not in TIMING_COLUMNS}


def assert_same_final_weights(run_a, run_b):
    """The final and the best-validation weights of two runs are equal bit for bit."""
    for name in ("weights.pt", "best_weights.pt"):
        a = torch.load(run_a / "final" / name, weights_only=False)["model"]
        b = torch.load(run_b / "final" / name, weights_only=False)["model"]
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)


LAUNCHED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_trainer_outlives_its_test():
    """A failing test must not leave a trainer (and its loader workers) running."""
    yield
    import psutil
    while LAUNCHED:
        proc = LAUNCHED.pop()
        if proc.poll() is None:
            try:
                for process in psutil.Process(proc.pid).children(recursive=True):
                    process.kill()
            except psutil.NoSuchProcess:
                pass
            proc.kill()
            proc.wait()


def launch(run_dir, s):
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "settings.yaml"
    path.write_text(yaml.safe_dump(asdict(s)))
    proc = subprocess.Popen([sys.executable, "-m", "equivox.train_process", "--run-dir", str(run_dir),
                             "--settings", str(path), "--progress", "log"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    LAUNCHED.append(proc)
    return proc


def test_run_record_is_complete(small_db, val_views, tmp_path):
    summary = run_training(tmp_path / "run", settings(small_db, val_views), progress=False)
    run = tmp_path / "run"
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    assert summary["steps"] == 12 and summary["examples_seen"] == 48
    train_rows, val_rows = rows(run, "train"), rows(run, "val")
    assert [int(r["step"]) for r in train_rows] == [2, 4, 6, 8, 10, 12]
    assert [int(r["step"]) for r in val_rows] == [0, 4, 8, 12]
    for r in train_rows:
        assert float(r["iterations_per_s"]) > 0 and 0 <= float(r["data_wait_fraction"]) <= 1
        assert int(r["host_rss_bytes"]) > 0 and float(r["compute_s"]) > 0
    assert float(train_rows[-1]["compute_s"]) <= float(val_rows[-1]["compute_s"])
    waits = [float(r["data_wait_s"]) for r in train_rows]
    assert waits == sorted(waits) and waits[-1] > 0  # cumulative; the first batch is always waited for
    for r in train_rows + val_rows:
        assert float(r["model_s"]) == pytest.approx(float(r["compute_s"]) - float(r["data_wait_s"]), abs=2e-3)
        assert r["gpu_util_percent"] == ""  # CPU run: no NVML sampling
    assert summary["model_s"] == pytest.approx(summary["compute_s"] - summary["data_wait_s"])
    final = run / "final"
    weights = torch.load(final / "weights.pt", weights_only=False)
    assert weights["arch"] == "tiny" and weights["spec"] == TINY
    assert (final / "metrics.csv").read_text() == (run / "metrics.csv").read_text()
    env = json.loads((run / "environment.json").read_text())["sessions"][0]
    assert env["packages"]["torch"].startswith("2.13.0") and "commit" in env["git"]


KILLED_CHOICES = {"defaults": {},
                  "adamw_plateau_clip": dict(optimizer="adamw", lr=0.01, weight_decay=0.1, lr_schedule="plateau",
                                             plateau_patience=1, warmup_steps=2, grad_clip_norm=1.0,
                                             early_stopping_patience=3)}


@pytest.mark.parametrize("choices", list(KILLED_CHOICES), ids=list(KILLED_CHOICES))
def test_kill_and_resume_equals_an_uninterrupted_run(small_db, val_views, tmp_path, choices):
    s = settings(small_db, val_views, max_steps=16, **KILLED_CHOICES[choices])
    straight = launch(tmp_path / "straight", s)
    assert straight.wait(timeout=600) == 0, straight.stderr.read()

    killed_dir = tmp_path / "killed"
    proc = launch(killed_dir, s)
    # kill at some step after the first checkpoint (step 4), before the end
    deadline = time.time() + 600
    while time.time() < deadline:
        ckpt = sorted((killed_dir / "checkpoints").glob("ckpt_*.pt")) if (killed_dir / "checkpoints").exists() else []
        steps_logged = len(rows(killed_dir, "train")) * 2 if (killed_dir / "metrics.csv").exists() else 0
        if ckpt and steps_logged >= 6:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((killed_dir / "status.json").read_text())["status"] == "running"
    resumed_from = load_latest_checkpoint(killed_dir)["step"]
    assert 4 <= resumed_from < 16

    again = launch(killed_dir, s)
    assert again.wait(timeout=600) == 0, again.stderr.read()

    assert_same_final_weights(tmp_path / "straight", killed_dir)
    records = [json.loads((d / "final/run.json").read_text()) for d in (tmp_path / "straight", killed_dir)]
    assert records[0]["best"] == records[1]["best"] and records[0]["stop_reason"] == records[1]["stop_reason"]
    after = lambda d: [without_timing(r) for r in rows(d) if int(r["step"]) > resumed_from]  # noqa: E731
    assert after(killed_dir) and after(killed_dir) == after(tmp_path / "straight")
    steps = [(r["kind"], r["step"]) for r in rows(killed_dir)]
    assert len(steps) == len(set(steps))                            # no step logged twice
    sessions = json.loads((killed_dir / "environment.json").read_text())["sessions"]
    assert len(sessions) == 2


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(small_db, val_views, tmp_path):
    run = tmp_path / "run"
    run_training(run, settings(small_db, val_views, max_steps=8, keep_checkpoints=3), progress=False)
    newest = sorted((run / "checkpoints").glob("ckpt_*.pt"))[-1]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])                      # truncated
    assert load_latest_checkpoint(run)["step"] == 4
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF                                  # one bit flipped
    newest.write_bytes(bytes(flipped))
    assert load_latest_checkpoint(run)["step"] == 4


def test_impossible_memory_request_is_recorded_as_oom(small_db, val_views, tmp_path):
    huge = dict(TINY, width=200_000)  # a 1-PB weight tensor
    with pytest.raises(RuntimeError):
        run_training(tmp_path / "run", settings(small_db, val_views, spec=huge), progress=False)
    status = json.loads((tmp_path / "run/status.json").read_text())
    assert status["status"] == "oom" and "allocate" in status["message"]


def test_model_exception_is_recorded_as_error(small_db, val_views, tmp_path):
    wrong = dict(TINY, layout="arch_0")  # arch_0 layout does not accept width/repeats -> error
    with pytest.raises(Exception):
        run_training(tmp_path / "run", settings(small_db, val_views, spec=wrong), progress=False)
    assert json.loads((tmp_path / "run/status.json").read_text())["status"] == "error"


def test_sigterm_checkpoints_and_a_killed_child_is_reported(small_db, val_views, tmp_path):
    s = settings(small_db, val_views, max_steps=10_000, checkpoint_every=1000, val_every=1000)
    run = tmp_path / "run"
    proc = launch(run, s)
    while not (run / "metrics.csv").exists() or not rows(run, "train"):
        time.sleep(0.05)
    # as SLURM does: every process of the job step, the loader worker included
    import psutil
    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    assert len(tree) >= 2, tree  # trainer, loader worker
    for process in tree:
        process.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 75
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and load_latest_checkpoint(run)["step"] == status["step"]

    # the supervisor notices a SIGKILLed child and says so
    (run / "settings.yaml").write_text(yaml.safe_dump(asdict(s)))
    import threading
    def kill_child_soon():
        while True:
            try:
                trainers = [c for c in psutil.Process().children(recursive=True)
                            if "equivox.train" in " ".join(c.cmdline())]
                steps = [int(r["step"]) for r in read_metrics(run / "metrics.csv") if r["kind"] == "train"]
            except (psutil.Error, ValueError):  # a child that just ended, a row being appended
                trainers, steps = [], []
            if trainers and steps and steps[-1] > status["step"]:
                trainers[0].kill()
                return
            time.sleep(0.05)
    threading.Thread(target=kill_child_soon, daemon=True).start()
    code = supervise(run, run / "settings.yaml")
    assert code == -signal.SIGKILL
    final = json.loads((run / "status.json").read_text())
    assert final["status"] == "killed" and "SIGKILL" in final["message"]


ESCNN_TINY = {"family": "escnn_cnn", "layout": "arch_3", "width": 1, "repeats": 1, "head_channels": [16]}


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_escnn_weights_load_into_a_fresh_model_in_any_mode(mode):
    """escnn registers expanded filters at init and in eval mode and drops them in train
    mode; saved weights leave them out and loading rebuilds them from the weights."""
    from equivox.models import build_model
    from equivox.run_state import load_weights, weights_of
    torch.manual_seed(0)
    trained = build_model("tiny", ESCNN_TINY)
    trained.train()
    weights = weights_of(trained)
    assert not any(k.endswith((".filter", ".matrix", ".sampled_basis")) for k in weights)
    trained.eval()
    assert weights_of(trained).keys() == weights.keys()
    torch.manual_seed(1)
    fresh = build_model("tiny", ESCNN_TINY)
    getattr(fresh, mode)()
    load_weights(fresh, weights)
    assert fresh.training == (mode == "train")
    fresh.eval()
    x = torch.randn(2, 2, 4, 21, 21, 21)
    with torch.no_grad():
        assert torch.equal(fresh(x), trained(x))


def test_a_finished_escnn_run_resumes_and_continues(small_db, val_views, tmp_path):
    """A rerun with a larger budget (only) continues a complete escnn run from its last checkpoint."""
    run = tmp_path / "run"
    s = settings(small_db, val_views, spec=ESCNN_TINY, max_steps=2, log_every=1, val_every=2,
                 checkpoint_every=2)
    run_training(run, s, progress=False)
    summary = run_training(run, settings(small_db, val_views, spec=ESCNN_TINY, max_steps=3, log_every=1,
                                         val_every=2, checkpoint_every=2), progress=False)
    assert summary["steps"] == 3
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    assert len(json.loads((run / "environment.json").read_text())["sessions"]) == 2


def test_training_from_materialised_shards(small_db, val_views, tmp_path):
    from equivox.views import ViewPairSampler, ViewParams, write_view_set
    sampler = ViewPairSampler(small_db, "train", ViewParams.from_config(VIEW_CONFIG), seed=0)
    shards = [tmp_path / f"{j:03d}.h5" for j in range(2)]
    for j, path in enumerate(shards):
        write_view_set(path, sampler, 6, first_index=6 * j, progress=False)
    summary = run_training(tmp_path / "run", settings(small_db, val_views, max_steps=4, val_every=4,
                                                       train_shards=[str(p) for p in shards]), progress=False)
    assert summary["steps"] == 4 and summary["examples_seen"] == 16  # 16 > 12: the shards cycled
    assert len(rows(tmp_path / "run", "train")) == 2


# --- training choices: optimizer, schedule, clipping, early stopping, best weights --------

def val_losses(run_dir):
    return [(int(r["step"]), float(r["val_loss"])) for r in rows(run_dir, "val")]


def test_best_weights_are_those_of_the_best_validation_and_early_stopping_stops(small_db, val_views, tmp_path,
                                                                                caplog):
    """SGD at a rate that overshoots: the validation loss falls, then rises; with patience
    2 the run stops at the second validation after the best, and best_weights.pt holds
    the weights checkpointed at the best validation's step."""
    import logging
    from equivox.run_state import load_trained_model
    run = tmp_path / "run"
    s = settings(small_db, val_views, optimizer="sgd", lr=0.5, momentum=0.9, max_steps=40, val_every=2,
                 checkpoint_every=2, keep_checkpoints=100, early_stopping_patience=2)
    with caplog.at_level(logging.INFO, logger="equivox.train"):
        summary = run_training(run, s, progress=False)
    record = json.loads((run / "final/run.json").read_text())
    # expected from the validation rows alone: the earliest lowest loss, the stop two later
    best_step, best_loss, since, stop_step = None, None, 0, None
    for step, loss in val_losses(run):
        if best_loss is None or loss < best_loss:
            best_step, best_loss, since = step, loss, 0
        else:
            since += 1
        if since == 2:
            stop_step = step
            break
    assert stop_step is not None and 0 < best_step < stop_step < 40, val_losses(run)
    assert val_losses(run)[-1][0] == stop_step == summary["steps"] == record["steps"]
    assert record["stopped_early"] is True and record["stop_reason"].startswith("early stopping: 2 consecutive")
    assert json.loads((run / "status.json").read_text())["status"] == "complete"
    assert "early stopping" in caplog.text
    assert record["best"]["step"] == best_step and f"{record['best']['val_loss']:.6f}" == f"{best_loss:.6f}"
    assert record["best"]["val_accuracy"] == pytest.approx(
        float(next(r["val_accuracy"] for r in rows(run, "val") if int(r["step"]) == best_step)), abs=1e-6)

    best = torch.load(run / "final/best_weights.pt", weights_only=False)
    last = torch.load(run / "final/weights.pt", weights_only=False)
    assert best.keys() == last.keys() and {k: best[k] for k in best if k != "model"} == \
        {k: last[k] for k in last if k != "model"}                   # the same format
    at_best = torch.load(run / f"checkpoints/ckpt_{best_step:08d}.pt", weights_only=False)["model"]
    assert best["model"].keys() == at_best.keys()
    assert all(torch.equal(best["model"][k], at_best[k]) for k in at_best)
    assert not all(torch.equal(best["model"][k], last["model"][k]) for k in at_best)
    model, saved = load_trained_model(run / "final/best_weights.pt")  # what the analyses load
    assert saved["arch"] == "tiny" and not model.training


def test_a_plain_run_records_why_it_ended(small_db, val_views, tmp_path):
    run_training(tmp_path / "run", settings(small_db, val_views, max_steps=4), progress=False)
    record = json.loads((tmp_path / "run/final/run.json").read_text())
    assert record["stopped_early"] is False and record["stop_reason"] == "max_steps (4) reached"
    best_step, best_loss = min(val_losses(tmp_path / "run"), key=lambda sv: (sv[1], sv[0]))
    assert record["best"]["step"] == best_step and (tmp_path / "run/final/best_weights.pt").exists()
    assert record["settings"]["optimizer"] == "adam" and record["settings"]["lr_schedule"] == "constant"


RESUMED_CHOICES = {
    "sgd_nesterov_cosine_warmup_clip": dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True,
                                            weight_decay=1e-3, lr_schedule="cosine", warmup_steps=3,
                                            grad_clip_norm=0.5),
    "adamw_plateau": dict(optimizer="adamw", lr=0.01, weight_decay=0.1, lr_schedule="plateau",
                          plateau_patience=1, min_lr=1e-5),
    "early_stopping": dict(optimizer="sgd", lr=0.5, momentum=0.9, val_every=2, early_stopping_patience=2),
}


@pytest.mark.parametrize("choices", list(RESUMED_CHOICES), ids=list(RESUMED_CHOICES))
def test_resume_with_training_choices_equals_an_uninterrupted_run(small_db, val_views, tmp_path, monkeypatch,
                                                                  choices):
    """A run that fails after its step-8 checkpoint and is rerun ends with the weights,
    best weights, schedule state and records of a run that never stopped: the schedule
    (plateau state), the best validation and the early-stopping count come back from
    the checkpoint."""
    s = settings(small_db, val_views, max_steps=16, **RESUMED_CHOICES[choices])
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    run_training(straight, s, progress=False)
    monkeypatch.setenv("EQUIVOX_FAULT", "step_error@9")
    with pytest.raises(RuntimeError, match="fault injected"):
        run_training(broken, s, progress=False)
    monkeypatch.delenv("EQUIVOX_FAULT")
    assert load_latest_checkpoint(broken)["step"] == 8
    run_training(broken, s, progress=False)

    assert_same_final_weights(straight, broken)
    summary = {d: json.loads((d / "final/run.json").read_text()) for d in (straight, broken)}
    for key in ("steps", "best", "stopped_early", "stop_reason"):
        assert summary[straight][key] == summary[broken][key], key
    assert [without_timing(r) for r in rows(broken)] == [without_timing(r) for r in rows(straight)]
    ends = [load_latest_checkpoint(d) for d in (straight, broken)]
    assert ends[0]["lr_schedule"] == ends[1]["lr_schedule"] and ends[0]["optimizer"]["param_groups"][0]["lr"] \
        == ends[1]["optimizer"]["param_groups"][0]["lr"]
    if choices == "adamw_plateau":
        assert ends[0]["lr_schedule"]["scale"] < 1                    # the plateau decayed after the resume
    if choices == "early_stopping":
        assert summary[straight]["stopped_early"] and summary[straight]["steps"] > 8
    if choices == "sgd_nesterov_cosine_warmup_clip":
        assert ends[0]["optimizer"]["param_groups"][0]["nesterov"] is True


def test_gradient_clipping_bounds_each_update(small_db, val_views, tmp_path):
    """Plain SGD with the gradient norm clipped to 1e-4 moves the parameters by at most
    lr * 1e-4 per step (unclipped, the tiny model's gradients are orders larger)."""
    import random

    import numpy as np
    from equivox.models import build_model
    s = settings(small_db, val_views, optimizer="sgd", lr=0.1, momentum=0.0, grad_clip_norm=1e-4, max_steps=4)
    run_training(tmp_path / "run", s, progress=False)
    torch.manual_seed(s.seed)                                         # the trainer's initial weights
    np.random.seed(s.seed)
    random.seed(s.seed)
    initial = build_model(s.arch, s.spec, in_channels=4, head=s.head)
    final = torch.load(tmp_path / "run/final/weights.pt", weights_only=False)["model"]
    moved = torch.cat([(final[k] - p.detach()).flatten() for k, p in initial.named_parameters()]).norm()
    assert 0 < moved <= 4 * 0.1 * 1e-4 * (1 + 1e-4)


def test_tensorboard_events_and_fingerprint(small_db, val_views, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from equivox.run_record import settings_fingerprint
    s = settings(small_db, val_views, max_steps=4, val_every=2, tensorboard=True)
    assert settings_fingerprint(s) == settings_fingerprint(settings(small_db, val_views, max_steps=4, val_every=2))
    run_training(tmp_path / "run", s, progress=False)
    events = EventAccumulator(str(tmp_path / "run/tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/train_loss", "train/lr", "val/val_loss", "val/val_accuracy", "train/model_s"} <= set(tags)
    assert [e.step for e in events.Scalars("val/val_loss")] == [0, 2, 4]
    # a longer budget continues the run; a failure after step 6's validation (flushed)
    # resumes from step 4: the events after it are purged and recomputed, none twice
    longer = settings(small_db, val_views, max_steps=10, val_every=2, tensorboard=True)
    os.environ["EQUIVOX_FAULT"] = "step_error@7"
    try:
        with pytest.raises(RuntimeError, match="fault injected"):
            run_training(tmp_path / "run", longer, progress=False)
    finally:
        del os.environ["EQUIVOX_FAULT"]
    events = EventAccumulator(str(tmp_path / "run/tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("val/val_loss")] == [0, 2, 4, 6]
    run_training(tmp_path / "run", longer, progress=False)
    events = EventAccumulator(str(tmp_path / "run/tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("val/val_loss")] == [0, 2, 4, 6, 8, 10]
    assert [e.step for e in events.Scalars("train/lr")] == [2, 4, 6, 8, 10]
    assert [round(e.value, 6) for e in events.Scalars("val/val_loss")] == [loss for _, loss in
                                                                            val_losses(tmp_path / "run")]


def test_tensorboard_without_the_package_fails_first_thing(small_db, val_views, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)            # as if not installed
    with pytest.raises(RuntimeError, match=r"train.tensorboard.*pip install 'equivox\[tensorboard\]'"):
        run_training(tmp_path / "run", settings(small_db, val_views, tensorboard=True), progress=False)
    status = json.loads((tmp_path / "run/status.json").read_text())
    assert status["status"] == "error" and "train.tensorboard" in status["message"]
    assert not (tmp_path / "run/metrics.csv").exists()
