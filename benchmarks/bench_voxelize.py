"""Views per second of equivox.voxelize on a realistic workload, vs macromol_voxelize.

Workload: a real crystal structure (MDAnalysisTests ships several); each view is centred
on a random heavy atom, in a Haar-random frame, with the atoms pre-cropped to the view's
bounding sphere as the loader does. Views are 21^3 x 4 channels at 0.75 A (the defaults
of ImageParams). Only image_from_atoms is timed; inputs are already on the device.

    python benchmarks/bench_voxelize.py                 # CPU (1 thread) and CUDA if present
    python benchmarks/bench_voxelize.py --device cpu --batch-sizes 1 64
"""
from __future__ import annotations

import argparse
import gzip
import os
import platform
import statistics
import time
from pathlib import Path

# macromol_voxelize filters atoms with polars, which otherwise uses every core.
os.environ.setdefault("POLARS_MAX_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from equivox.config import default_config  # noqa: E402
from equivox.views import ViewParams  # noqa: E402
from equivox.voxelize import atom_radii, channel_index, image_from_atoms  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--structure", type=Path, default=None,
                        help="PDB file (.pdb or .pdb.gz); default MDAnalysisTests data/dssp/1h4aX.pdb.gz")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: CPU, then CUDA if available (default)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64, 256],
                        help="views per call on CPU (default: 1 16 64 256)")
    parser.add_argument("--gpu-batch-sizes", type=int, nargs="+", default=[256, 1024, 4096, 16384],
                        help="views per call on CUDA (default: 256 1024 4096 16384)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--pool", type=int, default=512, help="distinct views, reused cyclically (default 512)")
    parser.add_argument("--min-views", type=int, default=512,
                        help="views per timed repeat on CPU, at least one call (default 512)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-reference", action="store_true", help="skip macromol_voxelize")
    return parser.parse_args()


def load_structure(path: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heavy atoms of the first model, waters left out: coords_A (N, 3), elements (N,),
    occupancies (N,). Reads PDB fixed columns directly, so that the benchmark runs on a
    bare GPU host with only numpy, scipy and torch installed."""
    if path is None:
        from equivox.demo_data import mdanalysis_data_dir

        path = mdanalysis_data_dir() / "dssp" / "1h4aX.pdb.gz"
    coords, elements, occupancies = [], [], []
    with (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)) as handle:
        for line in handle:
            if line.startswith("ENDMDL"):
                break
            element = (line[76:78].strip() or line[12:14].strip()).upper()  # blank: from the atom name
            if line.startswith(("ATOM  ", "HETATM")) and element not in ("H", "D") and line[17:20] != "HOH":
                coords.append([float(line[30:38]), float(line[38:46]), float(line[46:54])])
                elements.append(element)
                occupancies.append(float(line[54:60]))
    return np.array(coords), np.array(elements), np.array(occupancies)


def make_views(coords_A, elements, occupancies, params, n_views, rng):
    """Per view: (coords_A in the view frame, channels, radii_A, occupancies), cropped to
    the atoms that can touch the cube, i.e. within its bounding sphere plus a radius."""
    channels, radii_A = channel_index(elements, params.channels), atom_radii(elements, params)
    crop_A = np.sqrt(3) * params.length_A / 2 + radii_A.max()
    views = []
    for rotation in Rotation.random(n_views, random_state=rng):
        centre_A = coords_A[rng.integers(len(coords_A))]
        near = np.linalg.norm(coords_A - centre_A, axis=1) < crop_A
        local_A = rotation.inv().apply(coords_A[near] - centre_A)
        views.append((local_A, channels[near], radii_A[near], occupancies[near]))
    return views


def batch_inputs(views, first, batch_size, device):
    """Flat (coords, channels, radii, occupancies, batch_index) for views first, first+1, ...
    (cyclically), so that every batch size sees the same views on average."""
    chosen = [views[(first + i) % len(views)] for i in range(batch_size)]
    parts = [np.concatenate([view[k] for view in chosen]) for k in range(4)]
    batch_index = np.repeat(np.arange(batch_size), [len(view[0]) for view in chosen])
    return [torch.as_tensor(part, device=device) for part in (*parts, batch_index)]


def time_calls(calls, repeats, sync) -> float:
    """Median over `repeats` of the seconds per call of running all `calls` (zero-argument
    callables), after one untimed warm-up call."""
    calls[0]()
    sync()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for call in calls:
            call()
        sync()
        seconds.append((time.perf_counter() - start) / len(calls))
    return statistics.median(seconds)


def reference_seconds_per_view(views, params, repeats):
    """macromol_voxelize on the same atoms, one view per call (its API), plus the largest
    per-voxel difference from equivox; None if it is not installed."""
    try:
        import macromol_voxelize as mmvx
        import polars as pl
    except ImportError:
        return None
    grid = mmvx.Grid(length_voxels=params.length_voxels, resolution_A=params.resolution_A)
    mmvx_params = mmvx.ImageParams(channels=len(params.channels), grid=grid)
    frames = [pl.DataFrame({"x": c[:, 0], "y": c[:, 1], "z": c[:, 2], "radius_A": r.astype(np.float64),
                            "occupancy": o, "channels": [[int(i)] for i in ch]})
              for c, ch, r, o in views]
    max_diff = max(float(np.abs(mmvx.image_from_atoms(frame, mmvx_params)[0]
                                - image_from_atoms(*view, params).numpy()).max())
                   for frame, view in zip(frames[:32], views[:32]))
    per_view = time_calls([lambda frame=frame: mmvx.image_from_atoms(frame, mmvx_params) for frame in frames],
                          repeats, lambda: None)
    return per_view, max_diff


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    params = ViewParams.from_config(default_config()).image
    views = make_views(*load_structure(args.structure), params, args.pool, rng)
    atoms_per_view = np.mean([len(view[0]) for view in views])
    in_grid = np.mean([(np.abs(view[0]) < params.length_A / 2 + view[2][:, None]).all(axis=1).sum()
                       for view in views])

    rows = []  # (device, batch, views/s, ms per call, peak device memory MiB)
    devices = ["cpu"] if args.device == "cpu" else ["cuda"] if args.device == "cuda" else (
        ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    for device in devices:
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        for batch_size in (args.gpu_batch_sizes if device == "cuda" else args.batch_sizes):
            n_calls = 1 if device == "cuda" else max(1, args.min_views // batch_size)
            batches = [batch_inputs(views, call * batch_size, batch_size, device) for call in range(n_calls)]
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            calls = [lambda inputs=inputs: image_from_atoms(*inputs[:4], params, batch_index=inputs[4],
                                                            batch_size=batch_size) for inputs in batches]
            seconds = time_calls(calls, args.repeats, sync)
            peak_MiB = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")
            rows.append((device, batch_size, batch_size / seconds, 1e3 * seconds, peak_MiB))
            del batches, calls

    reference = None if args.no_reference else reference_seconds_per_view(views, params, args.repeats)
    print(f"workload: {params.length_voxels}^3 x {len(params.channels)} channels at {params.resolution_A} A; "
          f"{atoms_per_view:.0f} atoms/view after bounding-sphere crop, {in_grid:.0f} touching the grid; "
          f"pool of {len(views)} views")
    print(f"{'device':<8}{'batch':>8}{'views/s':>12}{'ms/call':>10}{'peak MiB':>10}{'vs mmvx':>10}")
    for device, batch_size, rate, ms, peak_MiB in rows:
        ratio = f"{rate * reference[0]:.1f}x" if reference and device == "cpu" else "-"
        peak = "-" if device == "cpu" else f"{peak_MiB:,.0f}"
        print(f"{device:<8}{batch_size:>8}{rate:>12,.0f}{ms:>10.2f}{peak:>10}{ratio:>10}")
    if reference:
        print(f"{'mmvx':<8}{1:>8}{1 / reference[0]:>12,.0f}{1e3 * reference[0]:>10.2f}{'-':>10}{'1.0x':>10}"
              f"   (macromol_voxelize, per-voxel max |diff| {reference[1]:.1e})")
    best = {device: max(rate for d, _, rate, *_ in rows if d == device) for device in devices}
    summary = [f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}"]
    if "cpu" in best:
        summary.append(f"CPU ({args.threads} thread): {best['cpu']:,.0f} views/s")
    if "cuda" in best:
        summary.append(f"{torch.cuda.get_device_name()}: {best['cuda']:,.0f} views/s")
    summary.append(f"macromol_voxelize (1 thread): {1 / reference[0]:,.0f} views/s" if reference
                   else "macromol_voxelize not run")
    print("summary: " + "; ".join(summary))


if __name__ == "__main__":
    main()
