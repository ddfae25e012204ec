"""Runs whose record is the truth: lineages, failure endings, torn rows, append-only logs.

Failures are injected into the real trainer (a subprocess on the tiny demo data of
tests/conftest.py) and each must end the process within 60 s with its named status.
"""
import json
import os
import runpy
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import psutil
import pytest
import torch
import yaml

from equivox.run_record import METRIC_COLUMNS, read_metrics, settings_fingerprint
from equivox.train_process import run_training
from tests.test_train import settings, val_views  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 60


def status_of(run):
    return json.loads((Path(run) / "status.json").read_text())


def orphans() -> list:
    """This process's children, less multiprocessing's resource tracker (which a
    spawn-context DataLoader earlier in the session starts, and which lives as long
    as the session)."""
    def tracker(process) -> bool:
        try:
            return "multiprocessing.resource_tracker" in " ".join(process.cmdline())
        except psutil.NoSuchProcess:  # ended while listed: not an orphan
            return True

    return [p for p in psutil.Process().children(recursive=True) if not tracker(p)]


def stray_tmp(run):
    return sorted(str(p) for p in Path(run).rglob("*.tmp"))


def test_a_fresh_run_with_the_empty_output_folder_snakemake_made_supersedes_nothing(small_db, val_views, tmp_path):  # noqa: F811
    """Snakemake creates ``final/`` (the output's folder) and the supervisor writes a
    'running' status before the first session: neither is a lineage to set aside."""
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "status.json").write_text(json.dumps({"status": "running", "step": 0, "message": "trainer starting"}))
    summary = run_training(run, settings(small_db, val_views, max_steps=2, log_every=1, val_every=2,
                                         checkpoint_every=2, num_workers=0), progress=False)
    assert summary["steps"] == 2 and not (run / "superseded").exists()


def test_changed_setting_trains_a_new_lineage_and_keeps_the_old(small_db, val_views, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    s0 = settings(small_db, val_views, max_steps=4, log_every=2, val_every=2, checkpoint_every=2)
    first = run_training(run, s0, progress=False)
    old_weights = torch.load(run / "final/weights.pt", weights_only=False)["model"]

    # a budget change continues the run
    more = run_training(run, settings(small_db, val_views, max_steps=6, log_every=2, val_every=2,
                                      checkpoint_every=2, num_workers=0), progress=False)
    assert more["steps"] == 6 and not (run / "superseded").exists()
    assert len(json.loads((run / "environment.json").read_text())["sessions"]) == 2

    # a learning-rate change does not: new weights, a run.json that says so, old lineage kept
    s = settings(small_db, val_views, max_steps=6, log_every=2, val_every=2, checkpoint_every=2, lr=0.01)
    summary = run_training(run, s, progress=False)
    new_weights = torch.load(run / "final/weights.pt", weights_only=False)["model"]
    assert any(not torch.equal(old_weights[k], new_weights[k]) for k in old_weights)
    record = json.loads((run / "final/run.json").read_text())
    assert record["settings"]["lr"] == 0.01 and record["fingerprint"] == settings_fingerprint(s)
    assert summary["steps"] == 6 and len(json.loads((run / "environment.json").read_text())["sessions"]) == 1
    assert [int(r["step"]) for r in read_metrics(run / "metrics.csv") if r["kind"] == "val"] == [0, 2, 4, 6]
    (old,) = (run / "superseded").iterdir()
    assert old.name.endswith(settings_fingerprint(s0))
    assert "lr: 0.001 -> 0.01" in (old / "reason.txt").read_text()
    kept = torch.load(old / "final/weights.pt", weights_only=False)["model"]
    assert json.loads((old / "final/run.json").read_text())["steps"] == 6
    assert first["settings"]["lr"] == 0.001 and kept.keys() == old_weights.keys()


def test_architecture_change_retrains_instead_of_crashing(small_db, val_views, tmp_path):  # noqa: F811
    from tests.test_train import TINY
    run = tmp_path / "run"
    short = dict(max_steps=2, log_every=1, val_every=2, checkpoint_every=2)
    run_training(run, settings(small_db, val_views, **short), progress=False)
    wider = dict(TINY, width=3)
    summary = run_training(run, settings(small_db, val_views, spec=wider, **short), progress=False)
    assert summary["steps"] == 2 and summary["settings"]["spec"]["width"] == 3
    assert "spec" in next((run / "superseded").iterdir()).joinpath("reason.txt").read_text()


def test_torn_last_metrics_row_is_dropped_and_logged(tmp_path, caplog):
    path = tmp_path / "metrics.csv"
    header = ",".join(METRIC_COLUMNS)
    good = "train,2," + ",".join([""] * (len(METRIC_COLUMNS) - 2))
    for torn in ("train,1", "tra", good.rstrip(",")[:-1]):
        path.write_text(f"{header}\n{good}\n{torn}")
        assert [r["step"] for r in read_metrics(path)] == ["2"]
        assert "torn last row" in caplog.text and str(path) in caplog.text
    path.write_text(f"{header}\n{good}\n")                          # intact: nothing dropped
    assert len(read_metrics(path)) == 1
    path.write_text(f"{header}\ntra\n{good}\n")                     # damage mid-file: an error naming it
    with pytest.raises(ValueError, match=r"metrics.csv: line 2"):
        read_metrics(path)


LAUNCHED = []


@pytest.fixture(autouse=True)
def nothing_outlives_its_test():
    yield
    while LAUNCHED:
        proc = LAUNCHED.pop()
        if proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait()


def supervised(run, s, fault=None):
    """The rule's supervisor (equivox.supervise) over the real trainer, as a subprocess."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "settings.yaml").write_text(yaml.safe_dump(asdict(s)))
    env = dict(os.environ, **({"EQUIVOX_FAULT": fault} if fault else {}))
    code = ("import sys; from equivox.supervise import supervise; "
            f"sys.exit(min(abs(supervise({str(run)!r}, {str(run / 'settings.yaml')!r})), 255))")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    LAUNCHED.append(proc)
    return proc


def wait_ended(proc, started):
    try:
        out, _ = proc.communicate(timeout=DEADLINE_S + 120)
    except subprocess.TimeoutExpired:
        pytest.fail("the trainer did not end")
    return out, time.monotonic() - started


@pytest.mark.parametrize("fault, status, code, words", [
    ("step_error@3", "error", 1, "fault injected"),
    ("enospc@2", "disk_full", 6, "supervisor"),          # the status write fails too
])
def test_injected_failure_ends_the_run_promptly(small_db, val_views, tmp_path, fault, status, code, words):  # noqa: F811
    run = tmp_path / "run"
    s = settings(small_db, val_views, max_steps=40, log_every=2, val_every=20, checkpoint_every=2,
                 num_workers=2)
    t0 = time.monotonic()
    proc = supervised(run, s, fault)
    out, _ = wait_ended(proc, t0)
    # measured from the failing step: the trainer's start (imports, model) is not the failure
    failed_at = max(p.stat().st_mtime for p in [run / "status.json", *run.glob("metrics.csv")])
    assert time.time() - failed_at < DEADLINE_S, out[-3000:]
    assert proc.returncode == code, out[-3000:]
    assert status_of(run)["status"] == status and words in status_of(run)["message"], out[-3000:]
    assert stray_tmp(run) == [], out[-3000:]
    assert orphans() == []                                          # no orphaned loader worker


def test_a_file_where_the_checkpoints_must_go_is_an_error_not_a_hang(small_db, val_views, tmp_path):  # noqa: F811
    """The first checkpoint cannot be written (a file named ``checkpoints`` is in the
    way): the run ends at that step with an error naming it, its loader workers ended."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").write_text("not a folder")
    s = settings(small_db, val_views, max_steps=8, log_every=2, val_every=4, checkpoint_every=4,
                 num_workers=2)
    out, elapsed = wait_ended(supervised(run, s), time.monotonic())
    status = status_of(run)
    assert (status["status"], status["step"]) == ("error", 4) and "FileExistsError" in status["message"], out
    assert (run / "checkpoints").read_text() == "not a folder" and orphans() == []


def test_a_killed_loader_worker_is_named_and_ends_the_run(small_db, val_views, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    s = settings(small_db, val_views, max_steps=100_000, log_every=2, val_every=1000,
                 checkpoint_every=1000, num_workers=2)
    proc = supervised(run, s)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not read_metrics(run / "metrics.csv")[1:]:
        time.sleep(0.2)
    trainer = next(p for p in psutil.Process(proc.pid).children() if "equivox.train" in " ".join(p.cmdline()))
    workers = trainer.children()
    assert len(workers) == 2
    victim = workers[1]
    victim.kill()
    killed_at = time.monotonic()
    out, _ = wait_ended(proc, killed_at)
    assert time.monotonic() - killed_at < DEADLINE_S, out[-3000:]
    status = status_of(run)
    assert status["status"] == "worker_died", out[-3000:]
    assert f"pid {victim.pid}" in status["message"] and "worker" in status["message"]
    assert proc.returncode == 5


def test_requeued_run_log_holds_both_sessions_and_sigterm_exits_75(small_db, val_views, tmp_path):  # noqa: F811
    """scripts/train_model.py as the rule runs it: SIGTERM -> 75, then the rerun finishes;
    the append-only log keeps both sessions, each with its header."""
    run, log = tmp_path / "run", tmp_path / "logs/train.log"
    s = asdict(settings(small_db, val_views, max_steps=400, log_every=2, val_every=1000,
                        checkpoint_every=1000, num_workers=1))

    def rule(settings_dict):
        return [sys.executable, "-c",
                f"import runpy, sys; m = runpy.run_path({str(REPO / 'scripts/train_model.py')!r}); "
                f"sys.exit(m['main']({str(run)!r}, {settings_dict!r}, 1, {str(log)!r}))"]
    proc = subprocess.Popen(rule(s))
    LAUNCHED.append(proc)
    while not read_metrics(run / "metrics.csv")[1:]:
        time.sleep(0.2)
        assert proc.poll() is None, log.read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=DEADLINE_S) == 75, log.read_text()
    stopped = status_of(run)
    assert stopped["status"] == "interrupted"
    again = subprocess.run(rule({**s, "max_steps": stopped["step"] + 2}), timeout=600)
    assert again.returncode == 0, log.read_text()
    text = log.read_text()
    headers = [line for line in text.splitlines() if line.startswith("===== session start")]
    assert len(headers) == 2, text
    assert "resume step: none" in headers[0] and "previous end: not started" in headers[0]
    assert f"resume step: {stopped['step']}" in headers[1] and "previous end: interrupted" in headers[1]
    assert "SIGTERM received" in text and text.index(headers[1]) > text.index("SIGTERM received")
    assert "training run complete" in text and status_of(run)["status"] == "complete"


def test_a_broken_connection_to_a_dead_worker_is_a_worker_death():
    """A worker killed while it hands a batch over leaves the trainer with a broken
    connection before torch reports the death: the status still names the worker."""
    from equivox.train_process import classify_failure

    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead.kill()
        dead.wait()
        status, message = classify_failure(ConnectionResetError(104, "Connection reset by peer"),
                                           {"worker_pids": [alive.pid, dead.pid]})
        assert status == "worker_died" and f"worker 1 of 2 (pid {dead.pid})" in message, message
        assert classify_failure(ConnectionResetError(104, "reset"), {"worker_pids": [alive.pid]})[0] == "error"
    finally:
        alive.kill()
        alive.wait()
