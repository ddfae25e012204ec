#!/usr/bin/env bash
# Run by Snakemake inside the new conda environment (envs/equivox.yaml) after creating
# it: installs the equivox package, editable, from the checkout whose Snakefile runs
# (the Snakefile exports EQUIVOX_REPO), so that a rule's `from equivox import ...`
# imports this checkout's code. Its dependencies are already in the environment.
set -euo pipefail
: "${EQUIVOX_REPO:?is set by the equivox Snakefile; run this environment through snakemake --sdm conda}"
python -m pip install --no-deps --editable "$EQUIVOX_REPO"
