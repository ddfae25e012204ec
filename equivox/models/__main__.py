"""Print the layer-by-layer summary of architectures:  python -m equivox.models --help"""
from __future__ import annotations

import argparse
import time

from . import build_model, count_parameters, load_architectures, model_summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m equivox.models",
        description="Build architectures from a set and print, per layer, the output shape "
                    "for one pair of views and the trainable parameters.")
    parser.add_argument("names", nargs="*", help="architectures to show (default: all in the set)")
    parser.add_argument("--arch-set", default="config/architectures/demo.yaml",
                        help="architecture set YAML (default: %(default)s)")
    parser.add_argument("--head", choices=["mlp", "equivariant"], default="mlp")
    parser.add_argument("--channels", type=int, default=4, help="element channels per view")
    args = parser.parse_args(argv)

    from ..escnn_setup import import_escnn
    import_escnn()
    specs = load_architectures(args.arch_set)
    unknown = sorted(set(args.names) - set(specs))
    if unknown:
        parser.error(f"not in {args.arch_set}: {', '.join(unknown)} (there: {', '.join(specs)})")
    for name in args.names or specs:
        start = time.perf_counter()
        model = build_model(name, specs[name], in_channels=args.channels, head=args.head)
        built = time.perf_counter() - start
        print(f"\n{name} ({specs[name]['family']}): {count_parameters(model):,} parameters, "
              f"built in {built:.1f} s")
        print(f"  {'layer':<48}{'output shape':<28}{'parameters':>12}")
        for layer, shape, params in model_summary(model, (1, 2, args.channels, 21, 21, 21)):
            print(f"  {layer:<48}{str(shape):<28}{params:>12,}")


if __name__ == "__main__":
    main()
