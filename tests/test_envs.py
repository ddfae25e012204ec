"""The rules' conda environments (envs/*.yaml) install what the rules import, with the
pins of requirements.txt: read from the files, without conda or a network."""
import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))
NOT_IN_ENVS = "# not in envs/:"
"""The mark in requirements.txt of a line the environments leave out, with the reason."""
CONDA_ONLY = {"python", "pip"}
"""Environment packages that requirements.txt has no line for."""


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements() -> tuple[dict[str, str | None], set[str]]:
    """requirements.txt: ({name: version, or None for a local path}, names marked as not
    in the environments). ``-e .`` (equivox itself) is left out."""
    pins, left_out = {}, set()
    for line in (REPO / "requirements.txt").read_text().splitlines():
        spec = line.split(" #")[0].strip()
        if not spec or spec.startswith("#") or spec == "-e .":
            continue
        name, _, version = spec.partition("==")
        name = normalised(Path(name).name if name.startswith(".") else name)
        pins[name] = version or None
        if NOT_IN_ENVS in line:
            left_out.add(name)
    return pins, left_out


def env_packages(path: Path) -> dict[str, str | None]:
    """{name: version or None} of a conda environment file, conda and pip sections."""
    packages = {}
    for item in yaml.safe_load(path.read_text())["dependencies"]:
        for spec in item["pip"] if isinstance(item, dict) else [item]:
            name, version = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(?:==?\s*(\S+))?", spec).groups()
            packages[normalised(name)] = version
    return packages


def imported_distributions() -> set[str]:
    """The distributions that the equivox package and the rule scripts import, found
    from their import statements and this machine's installed packages."""
    modules = set()
    for path in [*(REPO / "equivox").rglob("*.py"), *(REPO / "scripts").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    providers = packages_distributions()
    return {normalised(dist) for module in modules - set(sys.stdlib_module_names) - {"equivox"}
            for dist in providers[module]}


def test_requirements_leave_out_only_marked_lines():
    pins, left_out = requirements()
    assert {"snakemake", "pytest"} <= left_out and "torch" in pins


@pytest.mark.parametrize("env", ENVS, ids=lambda path: path.name)
def test_an_environment_has_the_pins_of_requirements(env):
    pins, left_out = requirements()
    packages = env_packages(env)
    wanted = {name: version for name, version in pins.items() if name not in left_out}
    missing = sorted(set(wanted) - set(packages))
    assert not missing, f"{env.name} lacks {missing} (requirements.txt has them)"
    differ = {name: (packages[name], version) for name, version in wanted.items()
              if version is not None and packages[name] != version}
    assert not differ, f"{env.name} pins differently (env, requirements.txt): {differ}"
    extra = sorted(set(packages) - set(wanted) - CONDA_ONLY)
    assert not extra, f"{env.name} has {extra}, which requirements.txt does not install"


@pytest.mark.parametrize("env", ENVS, ids=lambda path: path.name)
def test_an_environment_installs_what_the_rules_import(env):
    missing = sorted(imported_distributions() - set(env_packages(env)))
    assert not missing, f"equivox/ or scripts/ import {missing}, which {env.name} does not install"
    # the package itself: installed by the post-deploy script from the checkout that
    # the Snakefile names
    deploy = env.with_suffix(".post-deploy.sh")
    assert deploy.is_file(), f"{deploy.name} (installs equivox into {env.name}) is missing"
    assert re.search(r'pip install .*"\$EQUIVOX_REPO"', deploy.read_text())
    assert 'os.environ["EQUIVOX_REPO"] = workflow.basedir' in (REPO / "Snakefile").read_text()


def test_every_rule_uses_an_environment_from_envs():
    rules = sorted((REPO / "workflow/rules").glob("*.smk"))
    lines = [line.strip() for path in rules for line in path.read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    envs = [lines[i + 1].rstrip(",") for i, line in enumerate(lines) if line == "conda:"]
    assert len(envs) == sum(line.startswith("rule ") for line in lines) and set(envs) == {"CONDA_ENV"}
    common = (REPO / "workflow/rules/common.smk").read_text()
    target = re.search(r'CONDA_ENV = "\.\./\.\./(envs/[^"]+)"', common).group(1)
    assert (REPO / target) in ENVS


def test_the_package_declares_what_it_imports():
    """``pip install .`` alone must give equivox what its modules import: every imported
    distribution is in pyproject.toml's dependencies or its optional extras."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *(spec for extra in project.get("optional-dependencies", {}).values()
                                            for spec in extra)]
    names = {normalised(re.match(r"[A-Za-z0-9_.\-]+", spec).group(0)) for spec in declared}
    # the compiled py3nj comes from third_party/ (requirements.txt), as escnn's dependency
    missing = sorted(imported_distributions() - names - {"py3nj"})
    assert not missing, f"equivox/ or scripts/ import {missing}, not declared in pyproject.toml"
