"""Build time, size and peak memory of every architecture of a set.

For each architecture, in a fresh process (so that peak memory is that model's alone):
  build s     time to construct the model (escnn bases from the warm cache; the first
              build of a new field type in a cold cache is slower, see --cold)
  params      trainable parameters, next to the reference count of the original lab notes
  peak        peak memory of one forward + backward at --batch-size: the process's
              peak RSS on CPU, torch.cuda.max_memory_allocated on CUDA (what nvidia-smi
              would show is higher by the caching allocator's slack: `reserved`)
  fwd+bwd s   time of one training step (forward, backward), after one warm-up step

    python benchmarks/bench_models.py                          # demo set, CPU, batch 2
    python benchmarks/bench_models.py --arch-set config/architectures/full.yaml \\
        --device cuda --batch-size 16                          # the study's batch on a GPU
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# parameters of the original lab notes (the reference column of docs/architectures.md)
REFERENCE_PARAMS = {
    "arch_0": "1.1-1.2M",
    "arch_1_width_14_kernel_3": "7.2M", "arch_1_width_7_kernel_3": "4.0M",
    "arch_1_width_14_kernel_5": "5.5M", "arch_1_width_7_kernel_5": "3.5M",
    "arch_2_width_14_repeats_4": "3.2M", "arch_2_width_7_repeats_1": "1.7M",
    "arch_3_width_14_repeats_4": "2.7M", "arch_3_width_7_repeats_1": "1.4M",
}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name: str, spec: dict, device: str, batch_size: int, cache: str | None, queue) -> None:
    import torch

    from equivox.escnn_setup import import_escnn
    from equivox.models import build_model, count_parameters

    import_escnn(cache)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = build_model(name, spec).to(device)
    build_s = time.perf_counter() - t0
    x = torch.randn(batch_size, 2, 4, 21, 21, 21, device=device)
    labels = torch.randint(0, 6, (batch_size,), device=device)

    def step():
        torch.nn.functional.cross_entropy(model(x), labels).backward()
        model.zero_grad(set_to_none=True)

    step()  # warm-up: cuDNN plans, lazily built buffers
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    step_s = time.perf_counter() - t0
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
        reserved = torch.cuda.max_memory_reserved() / 2**20
    else:  # the whole process's peak RSS, torch and escnn included (~0.5 GB of it)
        peak, reserved = rss_mb(), float("nan")
    queue.put((build_s, count_parameters(model), peak, reserved, step_s))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch-set", default=str(REPO / "config/architectures/demo.yaml"))
    p.add_argument("--archs", nargs="*", help="names from the set (default: all)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--cache", help="escnn cache directory (default: $EQUIVOX_ESCNN_CACHE or ~/.cache/equivox/escnn)")
    args = p.parse_args(argv)

    from equivox.models import load_architectures
    specs = load_architectures(args.arch_set)
    names = args.archs or list(specs)
    context = mp.get_context("spawn")
    if args.device == "cuda":
        import torch
        where = torch.cuda.get_device_name(0)
    else:
        import platform
        where = f"CPU ({platform.processor() or platform.machine()})"
    memory = "peak GPU MiB (reserved)" if args.device == "cuda" else "peak RSS MiB"
    print(f"{Path(args.arch_set).name} on {where}, batch {args.batch_size}, one fresh process per model")
    print(f"{'architecture':<32}{'build s':>9}{'params':>12}{'reference':>11}{memory:>26}{'fwd+bwd s':>11}")
    for name in names:
        queue = context.Queue()
        proc = context.Process(target=measure, args=(name, specs[name], args.device, args.batch_size,
                                                     args.cache, queue))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            print(f"{name:<32} failed (exit {proc.exitcode})", flush=True)
            continue
        build_s, params, peak, reserved, step_s = queue.get()
        mem = f"{peak:,.0f}" + (f" ({reserved:,.0f})" if reserved == reserved else "")
        print(f"{name:<32}{build_s:>9.1f}{params:>12,}{REFERENCE_PARAMS.get(name, '-'):>11}{mem:>26}{step_s:>11.2f}",
              flush=True)


if __name__ == "__main__":
    main()
