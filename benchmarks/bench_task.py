"""Measure the task's shortcuts against its geometry: which padding and face rule leak.

For each padding_A and face rule (require_all_faces true/false) it draws N validation
pairs from an origin database and prints the accuracy of the structure-blind baselines
(seam match, view A alone, view B alone; equivox.baselines) and, per face rule, the share
of origins that qualify (at least one / all six neighbouring view centres dense). Chance
is 1/6 = 0.167. The numbers in docs/views.md come from this script on the demo database.

    python benchmarks/bench_task.py results/origins.sqlite [--split val] [--n 256]
        [--paddings 0 0.75 1.5 2 3 4] [--resolution 0.75]

Run it where the database's relative atom-store paths resolve (the workflow directory).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from equivox.baselines import predictions
from equivox.config import default_config
from equivox.task import FACES
from equivox.views import ViewPairSampler, ViewParams, images_from_pairs, pack_atoms


def qualifying_share(sampler: ViewPairSampler, n_origins: int, rng) -> tuple[float, float]:
    """(share of origins with >= 1 dense neighbour, share with all 6), on random origins."""
    p = sampler.params
    any_ok = all_ok = 0
    for _ in range(n_origins):
        s = rng.choice(len(sampler.structures), p=sampler.weights)
        pack = sampler.pack
        centre = pack.origins_A[pack.origin_start[s] + rng.integers(pack.n_origins[s])].astype(np.float64)
        atoms = sampler.atoms(int(pack.structure_id[s]))
        rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        dense = sum(atoms.density(centre + p.offset_A * rotation @ face, p.origins.radius_A)
                    >= p.origins.min_nearby_atoms - 1e-4 for face in FACES)
        any_ok += dense > 0
        all_ok += dense == 6
    return any_ok / n_origins, all_ok / n_origins


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("db", help="origin database (results/origins.sqlite)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--n", type=int, default=256, help="pairs per setting")
    parser.add_argument("--paddings", type=float, nargs="+", default=[0, 0.75, 1.5, 2, 3, 4])
    parser.add_argument("--resolution", type=float, default=0.75, help="voxel edge, A (21 voxels a side)")
    args = parser.parse_args(argv)
    print(f"resolution {args.resolution} A, {args.n} {args.split} pairs per setting; chance 0.167")
    print(f"{'padding_A':>9} {'all_faces':>9} {'origins_ok':>10} {'seam':>6} {'view_a':>6} {'view_b':>6} {'s':>5}")
    for padding in args.paddings:
        for all_faces in (False, True):
            start = time.perf_counter()
            defaults = ViewParams.from_config(default_config())  # the schema's defaults
            params = replace(defaults, image=replace(defaults.image, resolution_A=args.resolution),
                             padding_A=padding, require_all_faces=all_faces, max_retries=1000)
            sampler = ViewPairSampler(args.db, args.split, params, seed=0)
            shares = qualifying_share(sampler, 500, np.random.default_rng(0))
            try:
                pairs = [sampler.sample(i) for i in range(args.n)]
            except RuntimeError:
                print(f"{padding:9.2f} {str(all_faces):>9} {shares[1 if all_faces else 0]:10.3f}  "
                      "(no pairs: too few qualifying origins)")
                continue
            images = images_from_pairs(pack_atoms(pairs), len(pairs), params.image)
            labels = np.array([p.label for p in pairs])
            acc = {k: float((v == labels).mean()) for k, v in predictions([images]).items()}
            print(f"{padding:9.2f} {str(all_faces):>9} {shares[1 if all_faces else 0]:10.3f} "
                  f"{acc['seam']:6.3f} {acc['view_a']:6.3f} {acc['view_b']:6.3f} "
                  f"{time.perf_counter() - start:5.1f}", flush=True)


if __name__ == "__main__":
    main()
