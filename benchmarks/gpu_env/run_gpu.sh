#!/usr/bin/env bash
# GPU benchmarks on the lent machine (Python 3.12, numpy 2, a CUDA torch, no internet).
# Carried there beside the working tree: .whl/wheels (escnn-atompaint, pymanopt, autograd,
# jsonschema and its deps, downloaded with `pip download --python-version 3.12`),
# .whl/lie (lie_learn unpacked, compiled modules removed, irrep_bases.py from here put
# in place) and results/{origins.sqlite,atoms,views} from the demo workflow.
# Usage: bash benchmarks/gpu_env/run_gpu.sh OUTDIR [which...]   which: models train voxelize
set -uo pipefail
out=${1:?output directory}; shift
which=${*:-models train}
# wheels are zip files: unpacked onto PYTHONPATH, no pip needed
mkdir -p /tmp/site && for w in .whl/wheels/*.whl; do python -m zipfile -e "$w" /tmp/site; done
export PYTHONPATH="$PWD:$PWD/.whl/lie:$PWD/third_party/py3nj:/tmp/site"
export EQUIVOX_ESCNN_CACHE=/tmp/escnn_cache PYTHONWARNINGS=ignore::SyntaxWarning
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)" | tee -a "$out/gpu.txt"
for w in $which; do
  case $w in
    models)
      timeout 300 python benchmarks/bench_models.py --arch-set config/architectures/full.yaml \
        --device cuda --batch-size 16 2>&1 | tee "$out/bench_models_full.txt" ;;
    train)
      timeout 300 python benchmarks/bench_train.py --arch-set config/architectures/full.yaml \
        --archs arch_0 arch_3_width_7_repeats_1 arch_2_width_7_repeats_1 resnet_alpha densenet_depth_4 \
        plain_arch_3_width_7_repeats_1 plain_resnet --batch-size 16 --workers 8 --steps 30 \
        --warmup 5 --voxelize-on loader 2>&1 | tee "$out/bench_train_loader.txt"
      timeout 120 python benchmarks/bench_train.py --arch-set config/architectures/full.yaml \
        --archs arch_3_width_7_repeats_1 plain_arch_3_width_7_repeats_1 --batch-size 16 --workers 4 \
        --steps 30 --warmup 5 --voxelize-on device --skip-naive 2>&1 | tee "$out/bench_train_device.txt" ;;
    voxelize)
      timeout 120 python benchmarks/bench_voxelize.py --device cuda 2>&1 | tee "$out/bench_voxelize.txt" ;;
  esac
done
