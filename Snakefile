# equivox: PDB entries -> atoms -> origins -> views -> trained encoders -> figures.
# This file is the table of contents; rules live in workflow/rules/, logic in equivox/.
import os
import re

from snakemake.utils import min_version, update_config

from equivox.config import check_devices, typed_overrides, validate_config

min_version("9.0")


# the report's front page (snakemake --report): what was run, on which data and config
report: "workflow/report/workflow.rst"


# the demo default, found beside this file whatever the working directory (-d);
# --configfile FILE is merged on top of it
configfile: os.path.join(workflow.basedir, "config/config.yaml")


# --config values arrive as strings (`--config train='{batch_size: 8}'` gives '8'): typed
# by the schema, then merged again over the config files
update_config(config, typed_overrides(workflow.config_settings.overwrite_config or {}))
# the schema ships with the package (equivox/schemas/config.schema.yaml): it fills every default
validate_config(config, workflow.basedir)

# escnn's memoised bases, for every job this run starts (jobs inherit the environment)
os.environ.setdefault("EQUIVOX_ESCNN_CACHE", os.path.abspath(config["escnn_cache_dir"]))
# this checkout, for envs/equivox.post-deploy.sh: `--sdm conda` installs it into the env
os.environ["EQUIVOX_REPO"] = workflow.basedir


include: "workflow/rules/common.smk"


wildcard_constraints:
    shard=r"\d{3}",
    index=r"\d{3}",
    split=r"val|test",
    arch="|".join(re.escape(name) for name in ARCHITECTURES),



include: "workflow/rules/data.smk"
include: "workflow/rules/views.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analyze.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/memory.smk"


rule all:
    input:
        final_outputs(),
    default_target: True


onstart:
    # device: cuda needs a GPU where the jobs run. Checked here, before the first job, only
    # when they run on this machine: a cluster executor submits from a CPU login node, and
    # there the trainer checks first thing in its job (docs/training.md, "Checked first")
    if workflow.local_exec:
        check_devices(config)


onsuccess:
    print_summary(log, failed=False)


onerror:
    print_summary(log, failed=True)
