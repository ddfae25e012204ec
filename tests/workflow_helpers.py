"""Run the real Snakefile in a temporary working directory."""
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, *args: str, config: dict | None = None, timeout_s: int = 900,
              check: bool = True, snakefile: Path = REPO / "Snakefile") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir),
           "--cores", "2", "--nocolor"]
    cmd += list(args)
    if config is not None:  # last: --configfile takes every word after it
        path = workdir / "test_config.yaml"
        path.write_text(yaml.safe_dump(config))
        cmd += ["--configfile", str(path)]
    env = dict(os.environ, EQUIVOX_ESCNN_CACHE=os.environ.get("EQUIVOX_ESCNN_CACHE", str(workdir / ".cache")))
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True,
                          timeout=timeout_s, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc
