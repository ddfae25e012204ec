"""What produced a result: package versions, git commit, host, time."""
from __future__ import annotations

import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata

PACKAGES = ("equivox", "numpy", "scipy", "torch", "escnn-atompaint", "py3nj", "lie-learn",
            "biopython", "h5py", "pandas", "matplotlib", "snakemake")


def package_versions(names=PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_state(cwd=None) -> dict[str, str | bool | None]:
    """Commit hash and whether the tree has uncommitted changes (None outside git)."""
    def run(*args):
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    try:
        commit = run("rev-parse", "HEAD") or None
        dirty = bool(run("status", "--porcelain", "--untracked-files=no")) if commit else None
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"commit": commit, "dirty": dirty}


def provenance() -> dict:
    return {"created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": socket.gethostname(), "python": sys.version.split()[0],
            "platform": platform.platform(), "packages": package_versions(), "git": git_state()}
