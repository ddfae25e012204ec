"""Studies: runs generated from base architectures, grids and replicates (equivox.study),
validated before anything runs, and planned by the real Snakefile."""
import copy
import re

import pytest
import yaml

from equivox.config import ConfigError, validate_config
from equivox.study import expand_runs
from tests.workflow_helpers import REPO, snakemake

DEMO = yaml.safe_load((REPO / "config/config.yaml").read_text())
DEMO_SET = yaml.safe_load((REPO / "config/architectures/demo.yaml").read_text())
FULL_SET = yaml.safe_load((REPO / "config/architectures/full.yaml").read_text())
TINY = "plain_arch_3_width_2_repeats_1"


def config_with(study=None, **train):
    config = copy.deepcopy(DEMO)
    config["study"] = study
    config["train"].update(train)
    if study and all(s.get("base") == ["resnet_alpha_tiny"] for s in study.get("sets") or [{}]):
        config["analysis"]["figures"]["facet"] = None  # the demo's facet, layout, is no ResNet key
    validate_config(config, REPO)
    return config


def runs_of(study, **train):
    return expand_runs(config_with(study, **train), DEMO_SET)


def test_without_a_study_each_architecture_is_one_run_named_as_in_the_set():
    runs = runs_of(None)
    assert list(runs) == list(DEMO_SET)
    for name, run in runs.items():
        assert (run.base, run.group, run.replicate, run.train) == (name, name, 0, {})
        assert run.spec["family"] == DEMO_SET[name]["family"]
    assert list(runs_of(None, models=[TINY])) == [TINY]


def test_grid_times_replicates_with_readable_names_seeds_and_values():
    runs = runs_of({"replicates": 2, "sets": [{"base": [TINY], "grid": {"train.lr": [0.001, 0.003],
                                                                         "arch.width": [4, 6]}}]}, seed=5)
    assert list(runs) == [f"{TINY}__lr={lr}__width={w}__seed={s}"
                          for lr in ("0.001", "0.003") for w in (4, 6) for s in (5, 6)]
    run = runs[f"{TINY}__lr=0.003__width=6__seed=6"]
    assert run.group == f"{TINY}__lr=0.003__width=6" and run.replicate == 1 and run.base == TINY
    assert run.train == {"lr": 0.003, "seed": 6}
    assert run.spec == {**runs_of(None)[TINY].spec, "width": 6}  # defaults filled, the grid's value set


def test_adding_a_value_keeps_every_existing_run_as_it_was():
    before = runs_of({"replicates": 2, "sets": [{"base": [TINY], "grid": {"arch.width": [4, 6]}}]})
    after = runs_of({"replicates": 3, "sets": [{"base": [TINY], "grid": {"arch.width": [4, 6, 8]}}]})
    assert set(before) < set(after) and len(after) == 9
    for name, run in before.items():
        assert after[name] == run


def test_several_sets_and_bases_and_a_set_without_grid():
    runs = runs_of({"sets": [{"base": [TINY]},
                             {"base": [TINY, "arch_3_width_2_repeats_1"], "grid": {"arch.repeats": [2]}}]})
    assert list(runs) == [f"{TINY}__seed=0", f"{TINY}__repeats=2__seed=0",
                          "arch_3_width_2_repeats_1__repeats=2__seed=0"]


def test_per_model_budgets_apply_by_run_group_or_base():
    runs = runs_of({"sets": [{"base": ["resnet_alpha_tiny"], "grid": {"train.lr": [0.001, 0.01]}}]},
                   max_steps_per_model={"resnet_alpha_tiny": 600, "resnet_alpha_tiny__lr=0.01": 20})
    assert runs["resnet_alpha_tiny__lr=0.001__seed=0"].train["max_steps"] == 600
    assert runs["resnet_alpha_tiny__lr=0.01__seed=0"].train["max_steps"] == 20
    # a grid over the budget itself wins over the per-model entry
    runs = runs_of({"sets": [{"base": ["resnet_alpha_tiny"], "grid": {"train.max_steps": [30]}}]},
                   max_steps_per_model={"resnet_alpha_tiny": 600})
    assert runs["resnet_alpha_tiny__max_steps=30__seed=0"].train["max_steps"] == 30


@pytest.mark.parametrize("study, words", [
    ({"sets": [{"base": ["nope"]}]}, ["study.sets[0].base", "['nope']", "allowed:", TINY]),
    ({"sets": [{"base": [TINY], "grid": {"train.lrr": [1]}}]}, ["study.sets[0].grid.train.lrr", "unknown training key"]),
    ({"sets": [{"base": [TINY], "grid": {"train.seed": [1, 2]}}]}, ["train.seed", "study.replicates"]),
    ({"sets": [{"base": [TINY], "grid": {"train.models": [[TINY]]}}]}, ["train.models", "not a key a grid can vary"]),
    ({"sets": [{"base": [TINY], "grid": {"width": [4]}}]}, ["grid.width", "arch.<key>", "train.<key>"]),
    ({"sets": [{"base": [TINY], "grid": {"arch.width": ["x"]}}]}, [f"run {TINY}__width=x", f"{TINY}.width", "integer"]),
    ({"sets": [{"base": ["resnet_alpha_tiny"], "grid": {"arch.width": [4]}}]}, ["resnet_alpha_tiny", "'width' was unexpected"]),
    ({"sets": [{"base": [TINY], "grid": {"train.lr": [-1]}}]}, ["train.lr=-1", "config train.lr", "minimum"]),
    ({"sets": [{"base": [TINY], "grid": {"train.log_every": [7]}}]}, ["train.log_every=7", "multiple of train.log_every"]),
    ({"sets": [{"base": [TINY], "grid": {"arch.width": [4, 4]}}]}, ["arch.width", "listed twice"]),
    ({"sets": [{"base": [TINY], "grid": {"arch.width": [4]}}, {"base": [TINY], "grid": {"arch.width": [4]}}]},
     ["study.sets[1]", f"{TINY}__width=4__seed=0", "earlier set"]),
    ({"sets": [{"base": [TINY], "grid": {"train.device": ["cpu/x"]}}]}, ["train.device"]),
    ({"sets": []}, ["study.sets"]),
    ({"replicates": 0, "sets": [{"base": [TINY]}]}, ["study.replicates"]),
    ({"sets": [{"base": [TINY], "grid": {"arch.width": [4]}, "extra": 1}]}, ["study.sets.0.extra", "unknown key"]),
])
def test_study_errors_name_the_set_key_and_value_before_anything_runs(study, words):
    with pytest.raises(ConfigError) as error:
        config_with(study)
    for word in words:
        assert word in str(error.value), str(error.value)


def test_every_problem_of_a_study_is_reported_at_once():
    with pytest.raises(ConfigError) as error:
        config_with({"sets": [{"base": ["nope"], "grid": {"train.lrr": [1]}},
                              {"base": [TINY], "grid": {"train.lr": [0]}}]})
    assert all(w in str(error.value) for w in ("['nope']", "train.lrr", "train.lr=0")), str(error.value)


def jobs_planned(workdir, *configfiles):
    proc = snakemake(workdir, "all", "-n", "--configfile", *map(str, configfiles))
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M)}


def test_the_tiny_study_plans_four_runs_and_a_new_value_only_adds_runs(tmp_path):
    jobs = jobs_planned(tmp_path, REPO / "config/studies/tiny.yaml")
    assert jobs["train_model"] == 4 and jobs["evaluate_test"] == 4, jobs
    study = yaml.safe_load((REPO / "config/studies/tiny.yaml").read_text())
    study["study"]["sets"][0]["grid"]["train.lr"].append(0.01)
    (tmp_path / "more.yaml").write_text(yaml.safe_dump(study))
    assert jobs_planned(tmp_path, tmp_path / "more.yaml")["train_model"] == 6


@pytest.mark.parametrize("name, n_runs", [("channels", (1 + 4 + 8) * 3), ("densenet_depth", 3 * 2 * 2),
                                          ("dead_units_plain", 2 * 2 * 2 * 3)])
def test_shipped_study_configs_plan_their_runs(tmp_path, name, n_runs):
    jobs = jobs_planned(tmp_path, REPO / "config/full_study.yaml", REPO / f"config/studies/{name}.yaml")
    assert jobs["train_model"] == n_runs, jobs
    for base in {b for s in yaml.safe_load((REPO / f"config/studies/{name}.yaml").read_text())["study"]["sets"]
                 for b in s["base"]}:
        assert base in FULL_SET


def test_the_run_description_lists_the_study():
    from equivox.run_description import _study_section

    assert _study_section(None) == []
    html = "".join(_study_section({"name": "tiny", "replicates": 2,
                                   "sets": [{"base": [TINY], "grid": {"train.lr": [0.001, 0.003]}}]}))
    assert "tiny" in html and "2 time(s)" in html and TINY in html and "train.lr" in html and "0.003" in html


def test_a_study_run_builds_under_its_name():
    """The trainer and the analyses build a run's model under the run's name."""
    from equivox.models import build_model

    runs = runs_of({"sets": [{"base": [TINY], "grid": {"arch.width": [4], "train.lr": [0.001]}}]})
    (name, run), = runs.items()
    assert "=" in name
    build_model(name, run.spec)
