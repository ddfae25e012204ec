"""The one atomic-write helper: a target is replaced whole or not at all, and a killed
writer's temporary file is cleaned up without touching a live writer's."""
import os
import subprocess
import sys

import pytest

from equivox.atomic import atomic_write, remove_stray_tmp
from equivox.atomic import tmp_path as temporary_name


def test_a_failed_write_leaves_the_old_target_and_no_temporary_file(tmp_path):
    target = tmp_path / "status.json"
    atomic_write(target, lambda h: h.write("old"))

    def fail(handle):
        handle.write("half")
        raise RuntimeError("cut off")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "old" and list(tmp_path.glob(".*.tmp")) == []


def test_stray_temporary_files_of_dead_writers_go_those_of_live_writers_stay(tmp_path):
    """Two writers of one target never share a temporary file (its name carries the pid);
    the trainer's start-up clean-up removes a killed writer's, not a running one's."""
    assert temporary_name(tmp_path / "metrics.csv").name == f".metrics.csv.{os.getpid()}.tmp"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / f".status.json.{dead}.tmp").write_text("torn")
        (tmp_path / f".status.json.{live.pid}.tmp").write_text("being written")
        (tmp_path / ".status.json.tmp").write_text("an older version's")
        removed = sorted(p.name for p in remove_stray_tmp(tmp_path))
        assert removed == sorted([f".status.json.{dead}.tmp", ".status.json.tmp"])
        assert (tmp_path / f".status.json.{live.pid}.tmp").exists()
    finally:
        live.kill()
        live.wait()

