"""Code that determines a result is tracked: each rule's ``code`` param (common.smk
``code_of``) changes exactly when package code its script runs changes.

Edits are made to a copy of the package; the fingerprints are those the rules get.
"""
import re
import shutil
from pathlib import Path

import pytest
import yaml

from equivox.code_version import FAMILY_MODULES, code_version, package_dir

REPO = Path(__file__).resolve().parents[1]
PER_ARCH = {"train_model", "analyze_dead_units", "evaluate_test", "memory_probe"}


def rule_scripts() -> dict[str, str]:
    """rule name -> script, from the rule files; every rule must carry a code param."""
    found = {}
    for smk in sorted((REPO / "workflow/rules").glob("*.smk")):
        text = smk.read_text()
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \t].*\n|\n)*)", text, re.M):
            script = re.search(r'"\.\./\.\./(scripts/\w+\.py)"', body)
            if script:
                code = re.search(r'code=code_of\("(scripts/\w+\.py)"', body)
                assert code, f"rule {name} in {smk.name} has no code=code_of(...) param"
                assert code.group(1) == script.group(1), f"rule {name}: code_of names another script"
                found[name] = script.group(1)
    return found


FAMILIES = sorted({spec["family"] for spec in
                   yaml.safe_load((REPO / "config/architectures/demo.yaml").read_text()).values()})


def fingerprints(root: Path) -> dict[str, str]:
    out = {}
    for rule, script in rule_scripts().items():
        if rule in PER_ARCH:
            for family in sorted(FAMILY_MODULES):
                out[f"{rule}[{family}]"] = code_version(REPO / script, family=family, root=root)
        else:
            out[rule] = code_version(REPO / script, root=root)
    return out


@pytest.fixture
def package(tmp_path):
    root = tmp_path / "equivox"
    shutil.copytree(package_dir(), root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def changed_after(package, path, old, new):
    before = fingerprints(package)
    file = package / path
    text = file.read_text()
    assert old in text, (path, old)
    file.write_text(text.replace(old, new, 1))
    after = fingerprints(package)
    return {rule for rule in before if before[rule] != after[rule]}


def test_every_rule_carries_a_code_param():
    assert len(rule_scripts()) >= 20


def test_docstrings_comments_and_log_messages_change_nothing(package):
    assert changed_after(package, "figures.py", '"""', '"""Edited docstring. ') == set()
    assert changed_after(package, "train.py", "import logging\n", "import logging  # a comment\n\n") == set()
    assert changed_after(package, "train.py", 'log.info("resumed %s', 'log.info("(edited) resumed %s') == set()
    assert changed_after(package, "train_process.py", 'help="the run directory',
                         'help="(edited) the run directory') == set()


def test_a_figures_edit_reruns_only_figure_rules(package):
    changed = changed_after(package, "figures.py", "import math\n", "import math\nEDITED = 1\n")
    assert changed and all(rule.startswith("plot_") for rule in changed), changed
    assert {"plot_curves", "plot_test_results", "plot_dead_units", "plot_dead_units_summary"} <= changed


def test_a_model_family_edit_retrains_only_that_family(package):
    changed = changed_after(package, "models/escnn_densenet.py", "from . import fields\n",
                            "from . import fields\nEDITED = 1\n")
    trained = {rule for rule in changed if rule.startswith("train_model")}
    assert trained == {"train_model[escnn_densenet]"}, changed
    assert {"analyze_dead_units[escnn_densenet]", "evaluate_test[escnn_densenet]"} <= changed
    assert not any(rule.startswith(("download", "parse", "views", "origin", "pisces")) for rule in changed)


def test_a_training_code_edit_retrains_every_model_and_no_data_rule(package):
    changed = changed_after(package, "train.py", "    step, examples_seen, compute_s, data_wait_s = 0, 0, 0.0, 0.0\n",
                            "    step, examples_seen, compute_s, data_wait_s = 0, 0, 0.0, 0.0  \n    EDITED = 1\n")
    assert {f"train_model[{f}]" for f in FAMILY_MODULES} <= changed
    assert not any(rule.startswith(("download", "parse", "views", "origin", "pisces", "choose")) for rule in changed)


def test_one_name_per_stage_and_every_rule_in_the_readme():
    """Rule ``r`` runs ``scripts/r.py`` (a training shard is a view set: scripts/views.py),
    and the README's stage table names every rule."""
    scripts = rule_scripts()
    assert {rule for rule, script in scripts.items() if script != f"scripts/{rule}.py"} == {"views_train_shard"}
    assert scripts["views_train_shard"] == "scripts/views.py"
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| stage | rules |"):].split("\n\n")[0]
    assert {rule for rule in scripts if f"`{rule}`" not in table} == set()


def test_no_import_circle_in_the_package():
    """No module imports, directly or through others, a module that imports it back
    (a submodule's import of its own package's ``__init__`` aside)."""
    from equivox.code_version import imported_modules

    root = package_dir()
    modules = {".".join(("equivox", *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__"): p
               for p in root.rglob("*.py")}
    graph = {name: {m for m in imported_modules(path, root) if m in modules and m != name
                    and not name.startswith(m + ".")}
             for name, path in modules.items()}

    def reaches(start: str, target: str) -> bool:
        todo, seen = list(graph[start]), set()
        while todo:
            name = todo.pop()
            if name == target:
                return True
            if name not in seen:
                seen.add(name)
                todo.extend(graph[name])
        return False

    assert graph["equivox.train"] and graph["equivox.evaluate"]
    assert [name for name in modules if reaches(name, name)] == []
