"""The cluster profile (slurm/profile.yaml) on a real single-node SLURM.

ci/slurm/start_slurm.sh installs and starts slurmctld, slurmd and munge with a fake
gpu:a100 GRES (root and apt needed; otherwise these tests are skipped, saying why). The
demo workflow runs through `snakemake --profile slurm` while its training job is
signalled and then cancelled; it must resume and end as a local, uninterrupted run does.
"""
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "slurm"
START, STOP = REPO / "ci/slurm/start_slurm.sh", REPO / "ci/slurm/stop_slurm.sh"

# site settings pointing at the CI cluster (partitions made by start_slurm.sh, whose
# default partition is `debug`: a job in cpu or gpu was sent there by the profile)
SITE = {"EQUIVOX_SLURM_ACCOUNT": "none", "EQUIVOX_SLURM_CPU_PARTITION": "cpu",
        "EQUIVOX_SLURM_GPU_PARTITION": "gpu", "EQUIVOX_SLURM_GPU_MODEL": "a100"}
DATA_OUTPUTS = ["results/origins.sqlite", "results/origins.summary.tsv"]


def demo_architecture() -> str:
    """The cheapest demo model: the first plain (non-equivariant) one."""
    names = list(yaml.safe_load((REPO / "config/architectures/demo.yaml").read_text()))
    return next((n for n in names if n.startswith("plain_")), names[0])


BASE = demo_architecture()
# the one run is a study's (docs/studies.md), so that a run name with "__" and "="
# goes through sbatch, the job's log and scontrol like any other
ARCH = f"{BASE}__lr=0.001__seed=0"
RUN_JSON = f"results/runs/{ARCH}/final/run.json"
MAX_STEPS = 30
# one model, a checkpoint every 10 steps, a small validation set: about half a minute
# of training on 2 cores, long enough to signal and cancel it between checkpoints
TEST_CONFIG = {"views": {"n_val": 32, "n_test": 32},
               "train": {"models": [BASE], "max_steps": MAX_STEPS, "log_every": 10,
                         "val_every": MAX_STEPS, "checkpoint_every": 10},
               "study": {"sets": [{"base": [BASE], "grid": {"train.lr": [0.001]}}]}}

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


def site_env(workdir: Path, **site) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "EQUIVOX_SLURM_"))}
    env.update(SITE, **site)
    env.setdefault("EQUIVOX_ESCNN_CACHE", str(workdir / ".cache"))
    return env


class Snakemake:
    """One snakemake run of the real Snakefile in ``workdir``, in the background; its
    output goes to <workdir>/<name>.log. ``slurm``: through the cluster profile."""

    def __init__(self, workdir: Path, name: str, *args: str, slurm: bool = True, timeout_s: int = 420):
        config = workdir / "test_config.yaml"
        config.write_text(yaml.safe_dump(TEST_CONFIG))
        how = ["--profile", str(PROFILE)] if slurm else ["--cores", "2"]
        # SIGINT on timeout: Snakemake ignores SIGTERM
        cmd = ["timeout", "-k", "20", "-s", "INT", str(timeout_s), sys.executable, "-m", "snakemake",
               "-s", str(REPO / "Snakefile"), "-d", str(workdir), *how, "--nocolor", *args,
               "--configfile", str(config)]
        self.log_path = workdir / f"{name}.log"
        with open(self.log_path, "w") as log:
            # cwd = workdir: the profile's relative slurm-logdir is taken from it
            self.proc = subprocess.Popen(cmd, cwd=workdir, env=site_env(workdir), stdout=log,
                                         stderr=subprocess.STDOUT)

    @property
    def text(self) -> str:
        return self.log_path.read_text()

    def wait(self) -> int:
        return self.proc.wait()

    def stop(self) -> None:
        """Interrupt a run still going (a failed test): Snakemake then scancels its jobs."""
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # timeout passes SIGINT on to snakemake
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def run_id(self) -> str | None:
        found = re.search(r"SLURM run ID: (\S+)", self.text)
        return found and found.group(1)

    def describe(self) -> str:
        return f"exit {self.proc.returncode}; end of {self.log_path}:\n{self.text[-6000:]}"


def scontrol_job(jobid: str) -> dict:
    out = subprocess.run(["scontrol", "show", "job", "-o", jobid], capture_output=True, text=True).stdout
    return dict(re.findall(r"([\w:/]+)=(\S*)", out))


def slurm_jobs(run_id: str) -> list[dict]:
    """Every job of one Snakemake run (squeue shows finished ones for MinJobAge=300 s).
    "name" is the rule (or group_rules) from the comment the plugin sets."""
    out = subprocess.run(["squeue", "--states=all", "--noheader", "--name", run_id,
                          "--format=%i|%T|%P|%k"], capture_output=True, text=True, check=True).stdout
    jobs = []
    for line in out.splitlines():
        jobid, state, partition, comment = line.strip().split("|", 3)
        name = re.match(r"rule_(.+?)(?:_wildcards_.*)?$", comment)
        jobs.append({"id": jobid, "state": state, "partition": partition,
                     "name": name.group(1) if name else comment, **scontrol_job(jobid)})
    return sorted(jobs, key=lambda job: int(job["id"]))


def wait_for(what: str, condition, timeout_s: float, run: Snakemake):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if run.proc.poll() is not None:
            pytest.fail(f"snakemake ended while waiting for {what}: {run.describe()}")
        time.sleep(0.3)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}: {run.describe()}")


def running_training_job(run: Snakemake) -> str | None:
    run_id = run.run_id()
    jobs = slurm_jobs(run_id) if run_id else []
    return next((j["id"] for j in jobs if j["name"] == "train_model" and j["state"] == "RUNNING"), None)


def training_state(run_dir: Path) -> tuple[int, dict, list[int]]:
    """(sessions so far, status.json, checkpoint steps) of one training run directory."""
    def read(name):
        try:
            return json.loads((run_dir / name).read_text())
        except (FileNotFoundError, json.JSONDecodeError):  # not there yet, or being replaced
            return None
    sessions = (read("environment.json") or {}).get("sessions", [])
    steps = sorted(int(p.stem.split("_")[1]) for p in (run_dir / "checkpoints").glob("ckpt_*.pt"))
    return len(sessions), read("status.json") or {}, steps


# --------------------------------------------------------------------------- fixtures

def controller_up() -> bool:
    if not shutil.which("scontrol"):
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    return ping.returncode == 0 and "UP" in ping.stdout


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node cluster; stopped at the end only if this session started it."""
    if os.geteuid() != 0:
        pytest.skip("SLURM tests need root: ci/slurm/start_slurm.sh installs and starts SLURM")
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        pytest.skip("SLURM is not installed and apt-get is not there to install it")
    already_up = controller_up()
    try:
        start = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip("ci/slurm/start_slurm.sh did not finish within 600 s")
    if start.returncode != 0:
        pytest.skip(f"ci/slurm/start_slurm.sh could not start SLURM (exit {start.returncode}):\n"
                    f"{(start.stdout + start.stderr)[-3000:]}")
    yield
    if not already_up:
        subprocess.run(["bash", str(STOP)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def workflow_rules() -> set[str]:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--list-rules"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    return set(proc.stdout.split())


def interrupt_training(run: Snakemake, run_dir: Path) -> dict:
    """While ``run`` trains: SIGTERM to the job step after the first checkpoint (what
    `--signal=TERM@600` sends before the wall-time limit), then scancel the resubmitted
    job after its first new checkpoint. Returns the job ids and the step resumed from,
    or the error that stopped it (the run goes on either way)."""
    try:
        job1 = wait_for("a running training job", lambda: running_training_job(run), 360, run)
        wait_for("the first checkpoint", lambda: training_state(run_dir)[2], 120, run)
        subprocess.run(["scancel", "--signal=TERM", job1], check=True)  # job steps only, as --signal does
        job2 = wait_for("the resubmitted training job",
                        lambda: (j := running_training_job(run)) != job1 and j, 180, run)
        _, status, _ = wait_for("the resumed run", lambda: (s := training_state(run_dir))[0] == 2
                                and s[1].get("status") == "running" and s, 120, run)
        wait_for("a checkpoint after the resume", lambda: training_state(run_dir)[2][-1] > status["step"], 120, run)
        subprocess.run(["scancel", job2], check=True)
        return {"signalled": job1, "cancelled": job2, "resumed_at": status["step"]}
    except pytest.fail.Exception as err:
        return {"error": str(err)}


@pytest.fixture(scope="module")
def runs(slurm_cluster, workflow_rules, tmp_path_factory):
    """The demo (data stage, and one model once train_model exists) through the profile
    as is, its training signalled and cancelled on the way; beside it, while the SLURM
    run mostly waits, the same run locally and uninterrupted."""
    local_dir, slurm_dir = tmp_path_factory.mktemp("local"), tmp_path_factory.mktemp("slurm")
    training = "train_model" in workflow_rules
    targets = DATA_OUTPUTS + ([RUN_JSON] if training else [])
    slurm = Snakemake(slurm_dir, "run", *targets)
    local = Snakemake(local_dir, "run", *targets, slurm=False)
    try:
        interrupted = interrupt_training(slurm, slurm_dir / f"results/runs/{ARCH}") if training else {}
        local.wait()
        slurm.wait()
    finally:
        local.stop()
        slurm.stop()
    run_id = slurm.run_id()
    return {"local": local, "local_dir": local_dir, "slurm": slurm, "slurm_dir": slurm_dir,
            "jobs": slurm_jobs(run_id) if run_id else [], "interrupted": interrupted}


def needs_training(workflow_rules):
    if "train_model" not in workflow_rules:
        pytest.skip("the workflow has no train_model rule yet")


# --------------------------------------------------------------------------- the profile alone

def test_a_missing_site_setting_is_named(tmp_path):
    """From the repository root `--profile slurm` resolves; a missing site setting stops it
    with one line naming it, before Snakemake's usage text."""
    env = site_env(tmp_path)
    del env["EQUIVOX_SLURM_GPU_PARTITION"]
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "slurm", "-d", str(tmp_path), "-n"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    # one line, before the usage text Snakemake prints for a profile it cannot read
    first = proc.stderr.split("usage:")[0].strip().splitlines()[-1]
    assert first.startswith("equivox: site setting EQUIVOX_SLURM_GPU_PARTITION is not set"), proc.stderr[-3000:]


def test_site_settings_reach_the_job_resources(tmp_path, workflow_rules):
    """A dry run shows what would be submitted: site partitions and account, the A100 ask."""
    (tmp_path / "test_config.yaml").write_text(yaml.safe_dump(TEST_CONFIG))
    env = site_env(tmp_path, EQUIVOX_SLURM_ACCOUNT="proj42", EQUIVOX_SLURM_CPU_PARTITION="short",
                   EQUIVOX_SLURM_GPU_PARTITION="a100-long", EQUIVOX_SLURM_GPU_MODEL="a100_80gb")
    targets = DATA_OUTPUTS + ([RUN_JSON] if "train_model" in workflow_rules else [])
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "slurm", "-d", str(tmp_path), "-n",
                           *targets, "--configfile", str(tmp_path / "test_config.yaml")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    resources = dict(re.findall(r"\nrule (\w+):.*?\n\s+resources: ([^\n]*)", out, re.S))
    origin_database = resources["origin_database"].split(", ")
    for item in ("slurm_partition=short", "slurm_account=proj42", "mem_mb=4000", "runtime=60"):
        assert item in origin_database, origin_database
    if "train_model" in workflow_rules:
        train = resources["train_model"].split(", ")
        for item in ("slurm_partition=a100-long", "slurm_account=proj42", "gpu=1", "gpu_model=a100_80gb",
                     "cpus_per_gpu=16", "mem_mb=64000", "runtime=1440", "slurm_extra=--signal=TERM@600"):
            assert item in train, train


# --------------------------------------------------------------------------- on SLURM

def test_every_job_completes_in_its_partition(runs):
    slurm, jobs = runs["slurm"], runs["jobs"]
    assert slurm.proc.returncode == 0, slurm.describe()
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", slurm.text)
    assert sorted(j["id"] for j in jobs) == sorted(submitted), slurm.describe()
    names = " ".join(j["name"] for j in jobs)
    for rule in ("demo_data", "download_structures", "parse_atoms", "choose_origins", "origin_database"):
        assert rule in names, jobs
    interrupted = {runs["interrupted"].get("signalled"), runs["interrupted"].get("cancelled")}
    for job in jobs:
        assert job["state"] == "COMPLETED" or job["id"] in interrupted, job
        if job["name"] != "train_model":
            assert (job["partition"], job["MinMemoryNode"]) == ("cpu", "4000M"), job
        if job["name"] == "origin_database":
            assert job["TimeLimit"] == "01:00:00", job
    # every job's SLURM log is kept, under the profile's slurm-logdir
    assert len(list((runs["slurm_dir"] / "logs/slurm").rglob("*.log"))) == len(jobs)


def test_outputs_equal_a_local_run(runs):
    """Row by row: the SQLite files differ in bytes (their metadata records a time)."""
    assert runs["local"].proc.returncode == 0, runs["local"].describe()
    assert runs["slurm"].proc.returncode == 0, runs["slurm"].describe()
    dirs = (runs["local_dir"], runs["slurm_dir"])
    dbs = [sqlite3.connect(d / "results/origins.sqlite") for d in dirs]
    for table in ("structures", "origins"):
        local, remote = (db.execute(f"SELECT * FROM {table} ORDER BY id").fetchall() for db in dbs)
        assert len(local) > 0 and local == remote, table
    local, remote = ({k: v for k, v in db.execute("SELECT key, value FROM metadata") if k != "created_utc"}
                     for db in dbs)
    assert local == remote
    for name in ("origins.summary.tsv", "origins.excluded.tsv", "pisces/kept.tsv", "pisces/dropped.tsv"):
        assert (dirs[0] / "results" / name).read_text() == (dirs[1] / "results" / name).read_text(), name


def test_training_asked_for_one_a100(runs, workflow_rules):
    needs_training(workflow_rules)
    slurm = runs["slurm"]
    assert slurm.proc.returncode == 0, slurm.describe()
    train = [j for j in runs["jobs"] if j["name"] == "train_model"]
    assert train and train[-1]["state"] == "COMPLETED", runs["jobs"]
    for job in train:
        assert job["partition"] == "gpu", job
        assert job["TresPerJob"] == "gres:gpu:a100:1", job        # sbatch --gpus=a100:1
        assert job["CpusPerTres"] == "gres:gpu:16", job           # --cpus-per-gpu=16
        assert job["MinMemoryNode"] == "62.50G", job              # --mem 64000
        assert job["TimeLimit"] == "1-00:00:00", job              # -t 1440
    _, status, _ = training_state(runs["slurm_dir"] / f"results/runs/{ARCH}")
    assert (status["status"], status["step"]) == ("complete", MAX_STEPS), status


def test_signalled_and_cancelled_training_resumes(runs, workflow_rules):
    """A job step sent SIGTERM checkpoints and fails; a job killed with scancel is
    reported failed; --retries resubmits both, each new job resumes from the newest
    checkpoint, and the run ends with the weights of the local, uninterrupted run."""
    needs_training(workflow_rules)
    interrupted, slurm = runs["interrupted"], runs["slurm"]
    assert "error" not in interrupted, interrupted.get("error")
    assert slurm.proc.returncode == 0, slurm.describe()
    text = slurm.text
    assert f"SLURM-job '{interrupted['signalled']}' failed, SLURM status is: 'FAILED'" in text, slurm.describe()
    assert f"SLURM-job '{interrupted['cancelled']}' failed, SLURM status is: 'CANCELLED'" in text, slurm.describe()
    assert [j["name"] for j in runs["jobs"]].count("train_model") == 3, runs["jobs"]
    sessions, status, _ = training_state(runs["slurm_dir"] / f"results/runs/{ARCH}")
    assert 0 < interrupted["resumed_at"] < MAX_STEPS and sessions == 3
    assert (status["status"], status["step"]) == ("complete", MAX_STEPS), status
    local, remote = (torch.load(d / f"results/runs/{ARCH}/final/weights.pt", weights_only=False)["model"]
                     for d in (runs["local_dir"], runs["slurm_dir"]))
    assert local.keys() == remote.keys()
    assert all(torch.equal(local[k], remote[k]) for k in local)
