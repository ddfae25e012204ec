"""Training throughput per architecture: model speed, loader speed, our loop vs a naive one.

For each architecture it prints
  model     steps/s and examples/s of forward+backward+Adam on batches already on the device
  loader    examples/s the data pipeline delivers alone (the configured workers)
  ours      the real training loop (equivox.train settings: workers, pinned memory,
            TF32, optional bf16, images built in workers or on the device): steps/s and
            the fraction of time spent waiting for data
  naive     the loop of the original study: images built in the main process, no
            workers, fp32 without TF32, a host sync every step
with warm-up steps excluded and the device synchronised around every timing.

Needs an origin DB and a validation view set from the workflow, e.g. after
`snakemake --cores 2 all --until voxelize`:

    python benchmarks/bench_train.py --archs arch_3_width_7_repeats_1 --batch-size 64
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from equivox.escnn_setup import import_escnn
from equivox.models import build_model, count_parameters, load_architectures
from equivox.views import (CollateImages, ViewPairDataset, ViewPairSampler, ViewParams,
                           collate_atoms, images_from_pairs)

REPO = Path(__file__).resolve().parents[1]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_loader(sampler, batch_size, workers, on_device, n_batches):
    collate = collate_atoms if on_device else CollateImages(sampler.params.image)
    return torch.utils.data.DataLoader(
        ViewPairDataset(sampler, epoch_size=batch_size * n_batches), batch_size=batch_size,
        num_workers=workers, collate_fn=collate, pin_memory=torch.cuda.is_available(),
        prefetch_factor=4 if workers else None, generator=torch.Generator().manual_seed(0))


def train_steps(model, optimizer, batches, device, n_steps, warmup, image_params, on_device,
                autocast_dtype=None, sync_every_step=False):
    """Run warmup + n_steps steps; returns (steps/s, data-wait fraction) of the timed part."""
    wait = 0.0
    model.train()
    for i in range(warmup + n_steps):
        if i == warmup:
            sync(device)
            t_start, wait = time.perf_counter(), 0.0
        t0 = time.perf_counter()
        inputs, labels = next(batches)
        if on_device:
            inputs = images_from_pairs(inputs, len(labels), image_params, device=device)
        inputs, labels = inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        wait += time.perf_counter() - t0
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(inputs).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if sync_every_step:
            loss.item()
    sync(device)
    elapsed = time.perf_counter() - t_start
    return n_steps / elapsed, wait / elapsed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default="results/origins.sqlite")
    p.add_argument("--config", default=str(REPO / "config/config.yaml"), help="workflow config (views, origins)")
    p.add_argument("--arch-set", default=str(REPO / "config/architectures/demo.yaml"))
    p.add_argument("--archs", nargs="*", help="names from the set (default: all)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--voxelize-on", choices=["loader", "device"], default="loader")
    p.add_argument("--amp", choices=["none", "bf16"], default="none")
    p.add_argument("--skip-naive", action="store_true")
    p.add_argument("--loader-only", action="store_true", help="time the data pipeline alone, no models")
    args = p.parse_args(argv)

    import_escnn()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    config = yaml.safe_load(Path(args.config).read_text())
    from equivox.config import validate_config
    validate_config(config, REPO)
    params = ViewParams.from_config(config)
    sampler = ViewPairSampler(args.db, "train", params, seed=0)
    specs = load_architectures(args.arch_set)
    names = args.archs or list(specs)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {gpu}; batch {args.batch_size}; {args.workers} loader workers; "
          f"images built in the {args.voxelize_on}; amp {args.amp}; torch {torch.__version__}")
    n_batches = args.warmup + args.steps

    # the data pipeline alone
    # the data pipeline alone, after its warm-up batches (worker start, structure caches)
    loader = make_loader(sampler, args.batch_size, args.workers, args.voxelize_on == "device", n_batches)
    for i, (inputs, labels) in enumerate(loader):
        if i == args.warmup:
            sync(device)
            t0 = time.perf_counter()
        if args.voxelize_on == "device":
            images_from_pairs(inputs, len(labels), params.image, device=device)
    sync(device)
    loader_rate = args.steps * args.batch_size / (time.perf_counter() - t0)
    print(f"loader alone: {loader_rate:,.0f} examples/s (after {args.warmup} warm-up batches)")
    if args.loader_only:
        return

    header = f"{'architecture':<30}{'params':>10}{'model ex/s':>12}{'ours it/s':>11}{'wait':>7}{'naive it/s':>12}{'speed-up':>10}{'loader/model':>14}{'peak GB':>9}"
    print(header)
    for name in names:
        torch.manual_seed(0)
        model = build_model(name, specs[name]).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        fixed = torch.rand(args.batch_size, 2, len(params.image.channels), *(3 * [params.image.length_voxels]), device=device)
        labels = torch.randint(0, 6, (args.batch_size,), device=device)
        model_rate, _ = train_steps(model, opt, iter(lambda: (fixed, labels), None), device, args.steps,
                                    args.warmup, params.image, False,
                                    torch.bfloat16 if args.amp == "bf16" and device.type == "cuda" else None)
        ours_loader = iter(make_loader(sampler, args.batch_size, args.workers, args.voxelize_on == "device", n_batches))
        ours, wait = train_steps(model, opt, ours_loader, device, args.steps, args.warmup, params.image,
                                 args.voxelize_on == "device",
                                 torch.bfloat16 if args.amp == "bf16" and device.type == "cuda" else None)
        peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")
        naive = float("nan")
        if not args.skip_naive:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
            naive_loader = iter(make_loader(sampler, args.batch_size, 0, False, n_batches))
            naive, _ = train_steps(model, opt, naive_loader, device, args.steps, args.warmup, params.image,
                                   False, None, sync_every_step=True)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = device.type == "cuda"
        print(f"{name:<30}{count_parameters(model):>10,}{model_rate * args.batch_size:>12,.0f}{ours:>11.2f}"
              f"{wait:>7.1%}{naive:>12.2f}{ours / naive:>10.1f}x{loader_rate / (model_rate * args.batch_size):>13.1f}x{peak:>9.2f}")


if __name__ == "__main__":
    main()
