"""Validation of the workflow config: the schema (:mod:`equivox.schema`, which also
validates architecture sets), then what the schema cannot express, each problem named
``config <dotted key>: <what is wrong> (<what is allowed>)``; a study's runs are
expanded and checked too (:mod:`equivox.study`). Typing of ``--config`` values.

Nothing here imports torch, so the workflow builds its DAG without it.
"""
from __future__ import annotations

import copy
import math
import string
from pathlib import Path

import yaml

from .schema import (ConfigError, FillingValidator, default_config, facet_problems,  # noqa: F401
                     load_architectures, load_schema, schema_defaults, schema_problems, schema_text,
                     validate_architectures)
from .study import expand_runs, study_problems
from .task import view_config_errors
from .train_config import train_choice_problems, train_problems  # noqa: F401


JSON_TYPES = {"integer": int, "number": (int, float), "boolean": bool, "string": str,
              "null": type(None), "array": list, "object": dict}


def _admits(schema: dict, value) -> bool:
    """Whether ``value``'s JSON type is one ``schema`` allows (any, without a ``type``)."""
    types = schema.get("type")
    if types is None:
        return True
    types = [types] if isinstance(types, str) else types
    if isinstance(value, bool):  # a bool is an int to Python, not to JSON Schema
        return "boolean" in types
    return any(isinstance(value, JSON_TYPES[t]) for t in types)


def _readings(text: str):
    """What a command-line string can mean: YAML's reading, then a number's (YAML 1.1
    reads ``1e-3`` as a string)."""
    for read in (yaml.safe_load, int, float):
        try:
            value = read(text)
        except (yaml.YAMLError, ValueError):
            continue
        if not (isinstance(value, float) and not math.isfinite(value)):  # nan, inf: no setting
            yield value


NULLS = ("null", "Null", "NULL", "~")
"""YAML's spellings of null: None for a key whose schema admits null, string or not."""


def _typed(value, schema: dict):
    """``value`` as the type ``schema`` wants: a string is read as YAML when the schema
    does not take a string but takes what the YAML or a number says (``'8'`` -> 8,
    ``'1e-3'`` -> 0.001, ``'null'`` -> None also for a key that takes a string or null;
    ``nan`` and ``inf`` are never read as numbers); objects and lists are typed item by item; anything else is left for the
    validator to report."""
    if isinstance(value, dict):
        properties, extra = schema.get("properties", {}), schema.get("additionalProperties")
        return {key: _typed(item, properties.get(key, extra if isinstance(extra, dict) else {}))
                for key, item in value.items()}
    if isinstance(value, list):
        items = schema.get("items", {})
        return [_typed(item, items) for item in value]
    if isinstance(value, str) and value in NULLS and _admits(schema, None):
        return None
    if isinstance(value, str) and not _admits(schema, value):
        return next((parsed for parsed in _readings(value) if _admits(schema, parsed)), value)
    if not isinstance(value, str) and not _admits(schema, value) and _admits(schema, ""):
        return str(value)  # Snakemake reads a top-level `key=12` as a number
    return value


def typed_overrides(overrides: dict) -> dict:
    """The ``--config`` values of a Snakemake command line, typed by the config schema.

    Snakemake takes ``--config KEY=VALUE`` with a top-level KEY only (no dots); a nested
    key is set with a YAML mapping, ``--config train='{batch_size: 8}'``, which it merges
    key by key into the config but reads with YAML's base loader, every value a string.
    Here each string becomes what the schema wants where YAML reads it so (``'8'`` -> 8
    for an integer key; a string key keeps ``'001'``), before validation.
    """
    return _typed(copy.deepcopy(overrides), load_schema("config"))


def validate_config(config: dict, repo: str | Path) -> None:
    """Validate the workflow ``config`` in place (fills defaults), then the constraints
    the schema cannot express (:func:`constraint_problems`; ``repo``: where relative
    paths are resolved). On failure raises ConfigError naming every offending key."""
    problems = schema_problems(config, "config", "config") or constraint_problems(config, Path(repo))
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

    problems += train_problems(config["train"])
    problems += _architecture_problems(config, repo)
    problems += view_config_errors(config["views"])
    problems += compare_problems(config["analysis"]["compare"])
    return problems


def compare_problems(pairs) -> list[str]:
    """``analysis.compare`` must be a list of [A, B] pairs of two different group names
    (whether the names are groups of the configured runs the workflow checks,
    workflow/rules/common.smk ``comparison_pairs``)."""
    example = "e.g. [[arch_3_width_2_repeats_1, plain_arch_3_width_2_repeats_1]]"
    if not isinstance(pairs, list):
        return [f"config analysis.compare: must be a list of [A, B] pairs of group names ({example}), "
                f"got {pairs!r}"]
    problems = []
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(name, str) for name in pair)):
            problems.append(f"config analysis.compare[{i}]: must be a pair [A, B] of group names ({example}), "
                            f"got {pair!r}")
        elif pair[0] == pair[1]:
            problems.append(f"config analysis.compare[{i}]: compares {pair[0]!r} with itself")
    return problems


def architecture_set_path(config: dict, repo: str | Path) -> Path:
    """The architecture set of config ``train.architectures``, resolved against ``repo``."""
    path = Path(config["train"]["architectures"])
    return path if path.is_absolute() else Path(repo) / path


def _architecture_problems(config: dict, repo: Path) -> list[str]:
    train, facet = config["train"], config["analysis"]["figures"]["facet"]
    path = architecture_set_path(config, repo)
    if not path.is_file():
        return [f"config train.architectures: file {str(path)!r} not found (a YAML architecture "
                "set, e.g. config/architectures/demo.yaml)"]
    try:
        raw = yaml.safe_load(path.read_text())
        specs = load_architectures(path)
    except (ValueError, yaml.YAMLError) as err:
        return [f"config train.architectures: {path} is not a valid architecture set: {err}"]
    problems, known = [], set(specs)
    unknown = sorted(set(train["models"] or []) - set(specs))
    if unknown:
        problems.append(f"config train.models: {unknown} not in {path} (allowed: {', '.join(sorted(specs))})")
    else:
        study = study_problems(config, raw)
        problems += study
        if not study:
            runs = expand_runs(config, raw)
            known |= set(runs) | {run.group for run in runs.values()}
            problems += facet_problems({name: run.spec for name, run in runs.items()}, facet)
    # a --configfile is merged key by key onto the demo defaults, so another architecture
    # set arrives with the demo's per-model budgets: say so, and ignore them
    ignored = sorted(set(train["max_steps_per_model"] or {}) - known)
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
