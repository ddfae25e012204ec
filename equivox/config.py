"""Config validation with messages that name the key: ``config origins.radius: ...``."""
from __future__ import annotations

import string
from pathlib import Path

import jsonschema
import yaml


class ConfigError(ValueError):
    """A config key or value the schema rejects."""


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        key = ".".join(filter(None, [where if error.absolute_path else "", extra[0]]))
        return f"config {key}: unknown key (allowed here: {', '.join(allowed)})"
    described = error.schema.get("description", "").strip().split(". ")[0]
    hint = f" ({described})" if described else ""
    return f"config {where}: {error.message}{hint}"


def validate_config(config: dict, schema_path: str | Path) -> None:
    """Validate ``config`` in place with snakemake.utils.validate (fills defaults).

    On failure raises ConfigError whose first line names every offending key.
    """
    from snakemake.utils import validate

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(_describe(e) for e in errors))
    validate(config, str(schema_path), set_default=True)
    problems = constraint_problems(config, Path(schema_path).resolve().parents[2])
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


URL_FIELDS = ("pdb_id", "pdb_id_lower", "middle")


def constraint_problems(config: dict, repo: Path) -> list[str]:
    """What the schema cannot say and a job would otherwise find late, one message per
    problem naming the key and what is allowed. ``repo``: where relative paths of the
    architecture sets are resolved."""
    problems = []
    splits = config["splits"]
    total = splits["train"] + splits["val"] + splits["test"]
    if abs(total - 1) > 1e-6:
        problems.append(f"config splits: train + val + test must be 1, got {total:g}")
    for key in ("train", "val", "test"):
        if splits[key] <= 0:
            problems.append(f"config splits.{key}: must be > 0 (a fraction of the PDB entries, "
                            f"0 < {key} < 1), got {splits[key]:g}")

    structures, demo = config["structures"], config["pisces"]["source"] == "demo"
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(structures["url_template"])
                  if name is not None]
        bad = sorted({name for name in fields if name not in URL_FIELDS})
    except ValueError as err:  # unbalanced braces
        fields, bad = [], [str(err)]
    if bad or not fields:
        problems.append(f"config structures.url_template: fields {bad or '(none)'} not allowed; "
                        f"use {', '.join('{' + f + '}' for f in URL_FIELDS)} (at least one)")
    if structures["source"] == "mirror" and not demo:
        mirror = structures["mirror_dir"]
        if not mirror:
            problems.append("config structures.mirror_dir: required when structures.source is 'mirror'")
        elif not Path(mirror).is_dir():
            problems.append(f"config structures.mirror_dir: {mirror!r} is not a directory "
                            "(structures.source is 'mirror')")

    train = config["train"]
    if train["max_steps"] is None and train["max_compute_h"] is None:
        problems.append("config train.max_steps / train.max_compute_h: set at least one budget "
                        "(a step count >= 1, or compute hours > 0)")
    for key in ("val_every", "checkpoint_every"):
        if train[key] % train["log_every"]:
            problems.append(f"config train.{key}: must be a multiple of train.log_every "
                            f"({train['log_every']}), got {train[key]}")
    problems += _architecture_problems(train, repo)
    from .task import view_config_errors  # torch-free

    problems += view_config_errors(config["views"])
    return problems


def _architecture_problems(train: dict, repo: Path) -> list[str]:
    path = Path(train["architectures"])
    path = path if path.is_absolute() else repo / path
    if not path.is_file():
        return [f"config train.architectures: file {str(path)!r} not found (a YAML architecture "
                "set, e.g. config/architectures/demo.yaml)"]
    from .models import load_architectures  # the set's own schema and defaults

    try:
        specs = load_architectures(path)
    except (ValueError, yaml.YAMLError) as err:
        return [f"config train.architectures: {path} is not a valid architecture set: {err}"]
    problems = []
    unknown = sorted(set(train["models"] or []) - set(specs))
    if unknown:
        problems.append(f"config train.models: {unknown} not in {path} (allowed: {', '.join(sorted(specs))})")
    # a --configfile is merged key by key onto the demo defaults, so another architecture
    # set arrives with the demo's per-model budgets: say so, and ignore them
    ignored = sorted(set(train["max_steps_per_model"] or {}) - set(specs))
    if ignored:
        import sys

        print(f"equivox: config train.max_steps_per_model: {ignored} not in {path}, ignored "
              "(write 'max_steps_per_model: null' to drop the demo's entries)", file=sys.stderr)
    return problems


def check_devices(config: dict) -> None:
    """``device: cuda`` (train.device, analysis.device) needs a GPU where the jobs run.

    Called by the Snakefile's ``onstart`` (after the DAG is built, before the first job)
    only when the jobs run on this machine; a cluster submission from a CPU login node
    skips it, and the trainer checks again first thing in its job."""
    wanted = [key for key, value in (("train.device", config["train"]["device"]),
                                     ("analysis.device", config["analysis"]["device"]))
              if value == "cuda"]
    if not wanted:
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(
            f"config {key}: 'cuda' but this machine has no usable GPU (torch.cuda.is_available() "
            "is False); allowed: auto, cpu, cuda" for key in wanted))
