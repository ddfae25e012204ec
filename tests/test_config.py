"""Config errors are raised while the Snakefile is read, naming the key and what is allowed."""
import copy

import pytest
import yaml

from equivox.config import ConfigError, check_devices, typed_overrides, validate_config
from tests.workflow_helpers import REPO, snakemake

DEMO = yaml.safe_load((REPO / "config/config.yaml").read_text())


def check(**sections):
    config = copy.deepcopy(DEMO)
    for section, values in sections.items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    validate_config(config, REPO)
    return config


def test_the_demo_config_passes():
    check()


@pytest.mark.parametrize("sections, words", [
    ({"train": {"log_every": 10, "val_every": 25}}, ["train.val_every", "multiple of train.log_every"]),
    ({"train": {"checkpoint_every": 15}}, ["train.checkpoint_every", "multiple"]),
    ({"train": {"max_steps": None, "max_compute_h": None}}, ["train.max_steps", "max_compute_h", "at least one"]),
    ({"structures": {"url_template": "https://x/{pdb}.cif"}}, ["structures.url_template", "['pdb']",
                                                                 "{pdb_id}, {pdb_id_lower}, {middle}"]),
    ({"structures": {"url_template": "https://x/static.cif"}}, ["structures.url_template", "at least one"]),
    ({"structures": {"url_template": "https://x/{pdb_id.cif"}}, ["structures.url_template"]),
    ({"pisces": {"source": "file", "path": "x"}, "structures": {"source": "mirror", "mirror_dir": "/no/such/dir"}},
     ["structures.mirror_dir", "not a directory"]),
    ({"pisces": {"source": "file", "path": "x"}, "structures": {"source": "mirror"}},
     ["structures.mirror_dir", "required"]),
    ({"splits": {"train": 0.85, "val": 0.15, "test": 0.0}}, ["splits.test", "> 0"]),
    ({"splits": {"train": 0.85, "val": 0.0, "test": 0.15}}, ["splits.val", "> 0"]),
    ({"train": {"architectures": "config/architectures/missing.yaml"}}, ["train.architectures", "not found"]),
    ({"train": {"models": ["arch_nope"]}}, ["train.models", "arch_nope", "allowed:"]),
    # the encoders' input side (equivox.task.INPUT_SIDE), checked before any view is made
    ({"views": {"length_voxels": 19}}, ["views.length_voxels", "19 voxels", "allowed: 21"]),
    # a mistyped facet key would put every run into one "no <key>" panel
    ({"analysis": {"figures": {"facet": "layuot"}}},
     ["analysis.figures.facet", "'layuot'", "allowed:", "family", "layout", "null"]),
    # a key only models outside train.models have
    ({"analysis": {"figures": {"facet": "block"}},
      "train": {"models": ["arch_3_width_2_repeats_1", "plain_arch_3_width_2_repeats_1"]}},
     ["analysis.figures.facet", "'block'", "allowed:"]),
])
def test_constraint_errors_name_the_key(sections, words):
    with pytest.raises(ConfigError) as error:
        check(**sections)
    for word in words:
        assert word in str(error.value), str(error.value)


def test_an_invalid_architecture_set_names_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"m": {"family": "plain_cnn", "layout": "arch_9"}}))
    with pytest.raises(ConfigError, match=r"config train.architectures: .*bad.yaml is not a valid"):
        check(train={"architectures": str(bad)})


def test_device_cuda_without_a_gpu_is_refused_only_where_jobs_run_locally():
    import torch
    config = check(train={"device": "cuda"})
    if torch.cuda.is_available():
        check_devices(config)
        return
    with pytest.raises(ConfigError, match=r"config train.device: 'cuda' but this machine has no usable GPU"):
        check_devices(config)
    check_devices(check(train={"device": "auto"}))                   # auto is always fine


@pytest.mark.workflow
def test_errors_stop_snakemake_before_the_first_job(tmp_path):
    """Real Snakemake: a bad key fails the dry run; device: cuda on a CPU machine fails a
    local run before any job (nothing in results/)."""
    proc = snakemake(tmp_path, "-n", config={**DEMO, "train": {**DEMO["train"], "val_every": 25}}, check=False)
    assert proc.returncode != 0 and "config train.val_every" in proc.stdout + proc.stderr
    import torch
    if torch.cuda.is_available():
        return
    proc = snakemake(tmp_path, config={**DEMO, "train": {**DEMO["train"], "device": "cuda"}}, check=False)
    assert proc.returncode != 0 and "config train.device" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_per_model_budgets_follow_the_architecture_set(tmp_path, capsys):
    """The demo's per-model steps arrive with any --configfile (merged key by key): with
    another architecture set they are ignored with a warning naming the key, while a
    misspelt model name in train.models stays an error."""
    other = tmp_path / "set.yaml"
    other.write_text(yaml.safe_dump({"tiny": {"family": "plain_cnn", "layout": "arch_3", "width": 2,
                                              "repeats": 1}}))
    assert DEMO["train"]["max_steps_per_model"], "the demo config no longer sets a per-model budget"
    check(train={"architectures": str(other)})
    assert "train.max_steps_per_model" in capsys.readouterr().err
    check(train={"architectures": str(other), "max_steps_per_model": None})
    assert "max_steps_per_model" not in capsys.readouterr().err
    with pytest.raises(ConfigError, match="train.models"):
        check(train={"architectures": str(other), "models": ["tiy"]})


def test_the_dag_builds_without_importing_torch(tmp_path):
    """The workflow plans every job from the package's torch-free modules (config, task,
    run records, code fingerprints); only the jobs import torch."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                           "-d", str(tmp_path), "-n", "--cores", "1", "all"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert {"equivox.config", "equivox.run_record", "equivox.code_version"} <= imported
    assert "torch" not in imported and "escnn" not in imported


def command_line(*entries: str) -> dict:
    """What Snakemake's own parser makes of ``--config ENTRY...``, typed by the schema."""
    from snakemake.cli import parse_config

    return typed_overrides(parse_config(list(entries)))


def test_command_line_values_are_typed_by_the_schema():
    """Snakemake reads a nested --config value as strings; the schema's types come back,
    and a key that takes strings keeps its text."""
    typed = command_line("train={batch_size: 8, lr: 1e-3, max_steps_per_model: {plain_cnn: 30}}",
                         "origins={exclude_hydrogens: false}", "demo={max_structures: null}",
                         "structures={mirror_dir: 001}", "pisces={methods: [XRAY, NMR]}",
                         "escnn_cache_dir=12")
    assert typed["train"] == {"batch_size": 8, "lr": 1e-3, "max_steps_per_model": {"plain_cnn": 30}}
    assert typed["origins"] == {"exclude_hydrogens": False}
    assert typed["demo"] == {"max_structures": None}
    assert typed["structures"] == {"mirror_dir": "001"}
    assert typed["pisces"] == {"methods": ["XRAY", "NMR"]}
    assert typed["escnn_cache_dir"] == "12"
    # what the schema cannot take stays as it came, for the validator to name
    assert command_line("train={batch_size: eight}")["train"] == {"batch_size": "eight"}
    with pytest.raises(ConfigError, match="config train.batch_size: 'eight' is not of type 'integer'"):
        check(train=command_line("train={batch_size: eight}")["train"])
    # null for a key that takes a string or null; nan and inf are not numbers
    assert command_line("analysis={figures: {facet: null}}")["analysis"] == {"figures": {"facet": None}}
    assert command_line("pisces={path: '~'}")["pisces"] == {"path": None}
    assert command_line("train={lr: nan, max_compute_h: .inf}")["train"] == {"lr": "nan", "max_compute_h": ".inf"}
    with pytest.raises(ConfigError, match="config train.lr: 'nan' is not of type 'number'"):
        check(train=command_line("train={lr: nan}")["train"])


@pytest.mark.workflow
def test_one_nested_key_is_overridden_from_the_command_line(tmp_path):
    """The README's override, through real Snakemake: the value arrives as an integer,
    and the other keys of its section keep the config file's values."""
    proc = snakemake(tmp_path, "-n", "all", "--config", "train={log_every: 7}", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "multiple of train.log_every (7), got 60" in out, out[-3000:]
    assert "not of type" not in out
    snakemake(tmp_path, "-n", "all", "--config", "train={batch_size: 8}")


@pytest.mark.parametrize("train, words", [
    ({"optimizer": "sgd", "nesterov": True, "momentum": 0}, ["train.nesterov", "momentum > 0"]),
    ({"optimizer": "adam", "nesterov": True}, ["train.nesterov", "needs optimizer sgd", "'adam'"]),
    ({"lr_schedule": "cosine", "max_steps": None, "max_compute_h": 1.0}, ["train.lr_schedule", "cosine",
                                                                          "max_steps, which is null"]),
    ({"lr_schedule": "cosine", "max_steps": 20, "warmup_steps": 20, "max_steps_per_model": None},
     ["train.warmup_steps", "max_steps <= warmup_steps"]),
    ({"lr_schedule": "step"}, ["train.lr_step_every", "required for lr_schedule step"]),
    ({"lr_step_every": 10}, ["train.lr_step_every", "step only", "'constant'"]),
    ({"lr_schedule": "plateau", "min_lr": 0.01, "lr": 0.001}, ["train.min_lr", "below train.lr"]),
    ({"min_lr": 1e-5}, ["train.min_lr", "cosine and plateau only"]),
    ({"optimizer": "rmsprop"}, ["train.optimizer", "is not one of", "adam", "adamw", "sgd"]),
    ({"lr_schedule": "linear"}, ["train.lr_schedule", "is not one of"]),
    ({"lr_gamma": 1.0}, ["train.lr_gamma", "maximum"]),
    ({"momentum": -0.1}, ["train.momentum", "minimum"]),
    ({"grad_clip_norm": 0}, ["train.grad_clip_norm"]),
    ({"early_stopping_patience": 0}, ["train.early_stopping_patience", "minimum"]),
    ({"plateau_patience": 0}, ["train.plateau_patience", "minimum"]),
    ({"weight_decay": -1}, ["train.weight_decay", "minimum"]),
    ({"optimiser": "sgd"}, ["train.optimiser", "unknown key", "optimizer"]),
])
def test_training_choices_are_checked_by_key(train, words):
    with pytest.raises(ConfigError) as error:
        check(train=train)
    for word in words:
        assert word in str(error.value), str(error.value)


def test_valid_training_choices_pass_and_defaults_are_filled():
    config = check()
    assert {k: config["train"][k] for k in ("optimizer", "weight_decay", "momentum", "nesterov", "lr_schedule",
                                            "warmup_steps", "lr_step_every", "lr_gamma", "plateau_patience",
                                            "min_lr", "grad_clip_norm", "early_stopping_patience",
                                            "tensorboard")} == {
        "optimizer": "adam", "weight_decay": 0, "momentum": 0.9, "nesterov": False, "lr_schedule": "constant",
        "warmup_steps": 0, "lr_step_every": None, "lr_gamma": 0.1, "plateau_patience": 2, "min_lr": 0,
        "grad_clip_norm": None, "early_stopping_patience": None, "tensorboard": False}
    check(train={"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
                 "lr_schedule": "cosine", "warmup_steps": 10, "min_lr": 1e-5, "grad_clip_norm": 1.0,
                 "early_stopping_patience": 3})
    check(train={"optimizer": "adamw", "weight_decay": 0.01, "lr_schedule": "step", "lr_step_every": 100})
    check(train={"lr_schedule": "plateau", "plateau_patience": 1, "lr_gamma": 0.5, "min_lr": 1e-6})


def test_tensorboard_without_the_package_is_a_config_error(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "tensorboard", None)           # as if not installed
    with pytest.raises(ConfigError, match=r"config train.tensorboard: .*pip install 'equivox\[tensorboard\]'"):
        check(train={"tensorboard": True})
