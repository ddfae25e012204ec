"""Training loader throughput at scale: pairs per CPU-second and RSS of one loader worker.

Builds synthetic training sets from the real demo structures (MDAnalysisTests): each
synthetic structure is 3 real structures, each under a random rotation, placed apart
along a random direction across the x axis (so that every x slab of a ball query cuts
through all three), with their origins moved alike. The set is built vectorised and
written as an atom pack (equivox/atom_pack.py). For each size it then runs the training
DataLoader path (ViewPairDataset + CollateImages, one worker, the study's view
parameters: the config schema's defaults) and reads the worker's CPU time and memory
from /proc: pairs per CPU-second of the worker (wall time is shared with whatever else
runs), its RSS, the anonymous part (the worker's own heap) and the file-backed part
(pages of the shared pack and of libraries). It also times each step of a pair in this process.

    python benchmarks/bench_loader.py                    # 60, 1000, 8000 structures
    python benchmarks/bench_loader.py --quick            # fewer pairs per size
    python benchmarks/bench_loader.py --sizes 60 500 --pairs 2048 --batch-size 64
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from bench_data import cpu_name  # benchmarks/ is on the path of a script run from it

from equivox.atom_pack import ATOM_ARRAYS, AtomPack, open_pack, structure_atoms, write_pack
from equivox.atoms import load_structure, nonbiological_residues, read_structure, write_structure
from equivox.config import default_config
from equivox.demo_data import demo_sources
from equivox.origins import choose_origins
from equivox.views import CollateImages, ViewPairDataset, ViewPairSampler, ViewParams, view_b_centre

PIECES = 3
"""Real structures per synthetic one."""


def real_structures(params: ViewParams) -> list[tuple[dict, np.ndarray]]:
    """(pack columns, origins (M, 3)) of every demo structure with origins, centred on its atoms."""
    out = []
    with tempfile.TemporaryDirectory() as tmp, h5py.File(Path(tmp) / "atoms.h5", "w") as h5:
        for path, pdb, chain in demo_sources():
            table = read_structure(path)
            chain = chain or str(table.auth_chain[0])
            key = f"{pdb}_{chain}"
            write_structure(h5, key, pdb, chain, table, path, nonbiological_residues())
            atoms = load_structure(h5, key)
            origins, _ = choose_origins(atoms, params.origins)
            columns = structure_atoms(atoms, params)
            if len(origins) and len(columns["x"]):
                centre = np.array([columns[a].astype(np.float64).mean() for a in "xyz"])
                out.append((columns, origins - centre, centre))
    return [(dict(c, x=c["x"] - m[0], y=c["y"] - m[1], z=c["z"] - m[2]), o) for c, o, m in out]


def rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3, 3) Haar-uniform rotations (normalised Gaussian quaternions)."""
    q = rng.normal(size=(n, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack([np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
                     np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
                     np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], 1)


def synthetic_pack(real, n_structures: int, params: ViewParams, seed: int = 0) -> AtomPack:
    """``n_structures`` synthetic structures of :data:`PIECES` transformed real ones each:
    one (n, 3) @ (3, 3) product per piece and one sort per structure, no per-atom Python."""
    rng = np.random.default_rng(seed)
    coords = [np.stack([c["x"], c["y"], c["z"]], 1).astype(np.float32) for c, _ in real]
    origins = [o.astype(np.float32) for _, o in real]
    extent = max(np.linalg.norm(c, axis=1).max() for c in coords)
    spacing = 2 * extent + params.offset_A + 2 * params.image.length_A  # pieces never share a view
    pieces = rng.integers(len(real), size=(n_structures, PIECES))
    rot = rotations(rng, n_structures * PIECES).astype(np.float32).reshape(n_structures, PIECES, 3, 3)
    angle = rng.uniform(0, 2 * np.pi, size=n_structures)  # the pieces' line, across x
    line = np.stack([np.zeros(n_structures), np.cos(angle), np.sin(angle)], 1).astype(np.float32)
    others = [name for name in ATOM_ARRAYS if name not in ("x", "y", "z")]
    structures, next_origin = [], 1
    for s in range(n_structures):
        moved = [(coords[p] @ rot[s, j].T + j * spacing * line[s], origins[p] @ rot[s, j].T + j * spacing * line[s])
                 for j, p in enumerate(pieces[s])]
        xyz = np.concatenate([m[0] for m in moved])
        order = np.argsort(xyz[:, 0], kind="stable")
        columns = {"x": xyz[order, 0], "y": xyz[order, 1], "z": xyz[order, 2],
                   **{name: np.concatenate([real[p][0][name] for p in pieces[s]])[order] for name in others}}
        structure_origins = np.concatenate([m[1] for m in moved])
        structures.append((s + 1, next_origin, columns, structure_origins))
        next_origin += len(structure_origins)
    return AtomPack.from_structures(structures, "train", params)


def _build(real, size: int, params: ViewParams, path: Path) -> None:
    write_pack(path, synthetic_pack(real, size, params, seed=size))


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_memory_mb(pid: int) -> dict[str, float]:
    """From /proc/pid/status: VmRSS; RssAnon, the worker's heap (pages it shares
    copy-on-write with the process that forked it included); RssFile, file pages in
    memory (the pack's, shared through the page cache, and the libraries')."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    return out


def _idle_cpu_s(pid: int) -> float:
    """The worker's CPU seconds once it has filled its prefetch queue and waits."""
    last = proc_cpu_s(pid)
    while True:
        time.sleep(0.3)
        now = proc_cpu_s(pid)
        if now == last:
            return now
        last = now


def loader_rate(pack_path: Path, params: ViewParams, n_pairs: int, batch_size: int, warmup: int) -> dict:
    """Pairs per CPU-second and memory of one DataLoader worker on the training path.

    The worker runs ``prefetch_factor`` batches ahead and then waits; its CPU time is read
    when it waits, before and after ``n_pairs // batch_size`` batches are taken, so the
    difference is the cost of exactly those batches."""
    n_batches, prefetch = max(n_pairs // batch_size, 1), 2
    sampler = ViewPairSampler(pack_path, "train", params, seed=0)
    dataset = ViewPairDataset(sampler, epoch_size=(warmup + n_batches + prefetch + 1) * batch_size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=1,
                                         collate_fn=CollateImages(params.image), prefetch_factor=prefetch)
    batches = iter(loader)
    pid = batches._workers[0].pid
    for _ in range(warmup):
        next(batches)
    cpu0 = _idle_cpu_s(pid)
    for _ in range(n_batches):
        next(batches)
    cpu = _idle_cpu_s(pid) - cpu0
    memory = proc_memory_mb(pid)
    del batches
    return {"pairs_per_cpu_s": n_batches * batch_size / cpu, **memory}


def pair_steps(pack_path: Path, params: ViewParams, n_pairs: int, batch_size: int) -> dict[str, float]:
    """Microseconds per pair of each step, in this process (one thread, like a worker)."""
    sampler = ViewPairSampler(pack_path, "train", params, seed=0)
    pairs = [sampler.sample(i) for i in range(50)]  # warm the pages in use
    t0 = time.process_time()
    pairs = [sampler.sample(i) for i in range(n_pairs)]
    sample_s = time.process_time() - t0
    # the density and crop calls of the accepted origins, again
    t0 = time.process_time()
    for pair in pairs:
        atoms = sampler.atoms(pair.structure_id)
        for face in range(6):
            atoms.density(view_b_centre(pair.centres_A[0], pair.rotation, face, params.offset_A),
                          params.origins.radius_A)
    density_s = time.process_time() - t0
    t0 = time.process_time()
    for pair in pairs:
        atoms = sampler.atoms(pair.structure_id)
        for centre in pair.centres_A:
            atoms.crop(centre, pair.rotation, params.image)
    crop_s = time.process_time() - t0
    collate = CollateImages(params.image)
    t0 = time.process_time()
    for start in range(0, n_pairs, batch_size):
        collate(pairs[start:start + batch_size])
    voxelize_s = time.process_time() - t0
    atoms = np.mean([len(c[0]) for p in pairs for c in p.atoms])
    return {"sample (all tries)": sample_s, "6 densities (accepted origin)": density_s,
            "2 crops": crop_s, "voxelize + batch": voxelize_s, "_atoms_per_view": atoms,
            "_n": n_pairs}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[60, 1000, 8000], help="training structures")
    parser.add_argument("--pairs", type=int, default=4096, help="pairs timed per size")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="512 pairs per size, steps on 512 pairs")
    parser.add_argument("--dir", default=None, help="where the packs go (default: a temporary folder)")
    args = parser.parse_args(argv)
    n_pairs = 512 if args.quick else args.pairs
    torch.set_num_threads(1)
    params = ViewParams.from_config(default_config())
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}")
    print(f"views: {params.image.length_voxels}^3 voxels of {params.image.resolution_A} A, "
          f"require_all_faces={params.require_all_faces}; batch {args.batch_size}, {n_pairs} pairs per size")
    t0 = time.perf_counter()
    real = real_structures(params)
    print(f"{len(real)} real structures, {np.mean([len(c['x']) for c, _ in real]):.0f} image atoms and "
          f"{np.mean([len(o) for _, o in real]):.0f} origins each ({time.perf_counter() - t0:.1f} s)")
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for size in args.sizes:
            path = Path(tmp) / f"train_{size}.pack"
            # built in a child: this process stays as small as a trainer's, whose memory
            # the loader worker inherits when it forks
            t0 = time.perf_counter()
            child = mp.get_context("fork").Process(target=_build, args=(real, size, params, path))
            child.start()
            child.join()
            build_s = time.perf_counter() - t0
            mapped = open_pack(path)
            assert child.exitcode == 0 and len(mapped) == size
            n_atoms, n_origins = len(mapped.x), len(mapped.origins_A)
            del mapped
            rate = loader_rate(path, params, n_pairs, args.batch_size, warmup=3)
            steps = pair_steps(path, params, min(n_pairs, 1024), args.batch_size)
            rows.append((size, n_atoms, n_origins, path.stat().st_size / 2**20, build_s, rate, steps))
            print(f"  {size} structures: built in {build_s:.1f} s, {rate['pairs_per_cpu_s']:.0f} pairs/CPU-s",
                  flush=True)
            path.unlink()
    base = rows[0][5]["pairs_per_cpu_s"]
    print("\n| training structures | atoms | origins | pack MB | build s | pairs per CPU-second | vs first "
          "| worker RSS MB | anonymous MB | file-backed MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, n_atoms, n_origins, mb, build_s, rate, _ in rows:
        print(f"| {size:,} | {n_atoms:,} | {n_origins:,} | {mb:.0f} | {build_s:.1f} | {rate['pairs_per_cpu_s']:.0f} "
              f"| {rate['pairs_per_cpu_s'] / base:.2f}x | {rate['VmRSS']:.0f} | {rate['RssAnon']:.0f} "
              f"| {rate['RssFile']:.0f} |")
    print("\nper pair, microseconds of CPU (this process, one thread):")
    names = [k for k in rows[0][6] if not k.startswith("_")]
    print("| training structures | " + " | ".join(names) + " | atoms per view |")
    print("|---:|" + "---:|" * (len(names) + 1))
    for size, *_, steps in rows:
        print(f"| {size:,} | " + " | ".join(f"{steps[k] / steps['_n'] * 1e6:.0f}" for k in names)
              + f" | {steps['_atoms_per_view']:.0f} |")


if __name__ == "__main__":
    main()
