"""Studies: the runs of a sweep, generated from config.

A study (config key ``study``, e.g. ``--configfile config/studies/<name>.yaml``) names
sets of runs. Each set takes base architectures from the architecture set and a grid of
values for architecture keys (``arch.<key>``) and training keys (``train.<key>``); every
combination of base and grid values is trained ``replicates`` times, with seeds
``train.seed``, ``train.seed + 1``, ...::

    study:
      name: optimizers
      replicates: 3
      sets:
        - base: [plain_resnet]
          grid:
            train.optimizer: [adam, sgd]
            arch.head_dropout: [0.0, 0.2]

Each run is one training job (the ``{arch}`` wildcard of the workflow) named after what
makes it: the base, each grid key and value in the order written, then the seed::

    plain_resnet__optimizer=sgd__head_dropout=0.2__seed=1

so a name never changes when values are added to a grid: only the new runs train. The
replicates of one setting form a *group* (the name without ``__seed=N``), which the
tables and curves aggregate. Without a study every architecture of ``train.models`` is
one run and one group, named as in the architecture set.

Everything is validated before any job runs (:func:`expand_runs`): an unknown base, a
grid key that is no architecture or training key, a value the schema rejects for that
run's architecture or for the training section, or two runs with one name, each named
with the run and the key.
"""
from __future__ import annotations

import copy
import itertools
import math
import re
from dataclasses import dataclass, field

from .schema import ConfigError, schema_problems, validate_architectures
from .train_config import train_problems

SEED_PART = "__seed="
"""What separates a run's group from its seed in a study run's name."""
ARCH_PREFIX, TRAIN_PREFIX = "arch.", "train."
NOT_IN_GRID = ("architectures", "models", "resources", "max_steps_per_model", "seed")
"""Training keys a grid cannot vary: the workflow's own keys, and the seed (replicates
set the seeds)."""
_NAME_CHARS = re.compile(r"^[A-Za-z0-9_.+=-]+$")


@dataclass(frozen=True)
class Run:
    """One training run of the workflow.

    Attributes:
        name: the run's name (``results/runs/<name>/``, the ``{arch}`` wildcard).
        base: the architecture of the set it was made from.
        spec: its architecture (the base's, with the grid's ``arch.`` values; defaults filled).
        train: training keys set for this run (the grid's ``train.`` values and the seed);
            the rest comes from config ``train``.
        group: the name without the seed: the replicates of one setting share it.
        replicate: 0, 1, ... within the group.
    """

    name: str
    base: str
    spec: dict
    train: dict = field(default_factory=dict)
    group: str = ""
    replicate: int = 0


def value_slug(value) -> str:
    """A grid value as it appears in run names: ``true``, ``0.001``, ``1-2-2-4``, ``sgd``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return format(value, "g") if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return "-".join(value_slug(item) for item in value)
    if isinstance(value, dict):
        raise ValueError("a mapping cannot be a grid value")
    return str(value)


def expand_runs(config: dict, raw_specs: dict) -> dict:
    """Name -> :class:`Run` for every run the validated ``config`` asks for.

    Args:
        config: the workflow config, validated (defaults filled).
        raw_specs: the architecture set as written (name -> spec, before defaults).

    Raises:
        ConfigError naming every problem (``config study.sets[0].grid.arch.width: ...``).
    """
    runs, problems = _expand(config, raw_specs)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return runs


def study_problems(config: dict, raw_specs: dict) -> list[str]:
    """The problems :func:`expand_runs` would raise, as messages."""
    return _expand(config, raw_specs)[1]


def _expand(config: dict, raw_specs: dict) -> tuple[dict, list[str]]:
    study = config.get("study")
    specs = validate_architectures(raw_specs)
    if not study:
        names = config["train"]["models"] or list(specs)
        return {name: Run(name, name, specs[name], {}, name, 0) for name in names if name in specs}, []

    problems: list[str] = []
    runs: dict[str, Run] = {}
    seed0 = config["train"]["seed"]
    for index, entry in enumerate(study["sets"]):
        where = f"config study.sets[{index}]"
        unknown = [name for name in entry["base"] if name not in raw_specs]
        if unknown:
            problems.append(f"{where}.base: {unknown} not in {config['train']['architectures']} "
                            f"(allowed: {', '.join(sorted(raw_specs))})")
        grid = entry["grid"]
        key_problems = _key_problems(grid, where, config["train"])
        problems += key_problems
        if unknown or key_problems:
            continue
        checked_train: set = set()
        for base in entry["base"]:
            for values in itertools.product(*grid.values()):
                setting = dict(zip(grid, values))
                arch = {k[len(ARCH_PREFIX):]: v for k, v in setting.items() if k.startswith(ARCH_PREFIX)}
                train = {k[len(TRAIN_PREFIX):]: v for k, v in setting.items() if k.startswith(TRAIN_PREFIX)}
                group = base + "".join(f"__{key.split('.', 1)[1]}={value_slug(value)}"
                                       for key, value in setting.items())
                spec, spec_problems = _spec_of(raw_specs[base], base, arch, group, where)
                problems += spec_problems
                train_key = repr(sorted(train.items()))
                if train_key not in checked_train:
                    checked_train.add(train_key)
                    problems += _train_problems(config, train, where)
                if spec_problems:
                    continue
                per_model = config["train"]["max_steps_per_model"] or {}
                if "max_steps" not in train and (group in per_model or base in per_model):
                    # a run's own name is looked up by run_record.settings_from_config
                    train["max_steps"] = per_model.get(group, per_model.get(base))
                for replicate in range(study["replicates"]):
                    name = f"{group}{SEED_PART}{seed0 + replicate}"
                    if name in runs:
                        problems.append(f"{where}: run {name!r} is also made by an earlier set "
                                        "(each run once)")
                        continue
                    runs[name] = Run(name, base, spec, {**train, "seed": seed0 + replicate}, group, replicate)
    if not problems and not runs:
        problems.append("config study.sets: no runs (give each set at least one base)")
    return runs, problems


def _key_problems(grid: dict, where: str, train: dict) -> list[str]:
    problems, short = [], {}
    for key, values in grid.items():
        for value in values:
            try:
                slug = value_slug(value)
            except ValueError as err:
                problems.append(f"{where}.grid.{key}: {err} (got {value!r})")
                continue
            if not _NAME_CHARS.match(slug):
                problems.append(f"{where}.grid.{key}: value {value!r} would put {slug!r} in run names; "
                                "allowed there: letters, digits and _ . + = -")
        if key.startswith(TRAIN_PREFIX):
            name = key[len(TRAIN_PREFIX):]
            if name in NOT_IN_GRID:
                hint = " (use study.replicates for seeds)" if name == "seed" else ""
                problems.append(f"{where}.grid.{key}: not a key a grid can vary{hint}")
            elif name not in train:
                problems.append(f"{where}.grid.{key}: unknown training key (allowed: "
                                f"{', '.join(sorted(k for k in train if k not in NOT_IN_GRID))})")
        elif not key.startswith(ARCH_PREFIX) or key == ARCH_PREFIX:
            problems.append(f"{where}.grid.{key}: grid keys are arch.<key> (an architecture key) "
                            "or train.<key> (a training key)")
        if len(values) != len(set(map(repr, values))):
            problems.append(f"{where}.grid.{key}: a value is listed twice ({values})")
        tail = key.split(".", 1)[-1]
        if tail in short:
            problems.append(f"{where}.grid.{key}: {short[tail]} has the same name in run names")
        short[tail] = key
    return problems


def _spec_of(raw: dict, base: str, arch: dict, group: str, where: str) -> tuple[dict, list[str]]:
    """The base's spec with the grid's values, validated under the base's name."""
    filled = {base: {**copy.deepcopy(raw), **copy.deepcopy(arch)}}
    problems = schema_problems(filled, "architectures", "architectures")
    return filled[base], [f"{where}.grid (run {group}): {problem}" for problem in problems]


def _train_problems(config: dict, train: dict, where: str) -> list[str]:
    """The schema's verdict on config ``train`` with this run's values (and the
    training constraints of equivox.config), each naming the grid key."""
    if not train:
        return []
    trial = copy.deepcopy(config)
    trial["train"].update(copy.deepcopy(train))
    problems = schema_problems(trial, "config", "config") or train_problems(trial["train"])
    keys = ", ".join(f"train.{k}={v!r}" for k, v in train.items())
    return [f"{where}.grid ({keys}): {problem}" for problem in problems]
