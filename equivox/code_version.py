"""Which package code a rule runs, as one short fingerprint (a Snakemake param).

Rule scripts are thin: the code that determines a result lives in ``equivox/``, which
no Snakemake rerun trigger sees. :func:`code_version` follows the imports of a rule's
script through the package (every ``import``/``from ... import`` anywhere in a module,
function-level ones included; transitively, within ``equivox`` only) and hashes the
syntax trees of those modules and of the script, with what cannot change a result
left out:

- comments and formatting (the syntax tree has none),
- docstrings (of modules, classes and functions),
- logging calls used as statements (``log.info(...)``, ``logger.warning(...)``,
  ``logging.error(...)``),
- command-line help (``help=``, ``description=``, ``epilog=``, ``usage=`` keywords).

Any other edit changes the fingerprint, so the rule's params change and Snakemake
reruns its jobs and, by mtime, everything downstream. Nothing is imported: this runs
while Snakemake builds the DAG, without torch.

The model families are separated: :data:`FAMILY_MODULES` names the module of each
family, and ``code_version(script, family=...)`` counts only that family's module (and
what it imports) among them, so editing ``equivox/models/plain.py`` changes the
fingerprint of the plain models' training only.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

PACKAGE = "equivox"
FAMILY_MODULES = {
    "escnn_cnn": "equivox.models.escnn_cnn",
    "escnn_resnet": "equivox.models.escnn_resnet",
    "escnn_densenet": "equivox.models.escnn_densenet",
    "plain_cnn": "equivox.models.plain",
    "plain_resnet": "equivox.models.plain",
    "plain_densenet": "equivox.models.plain",
}
"""Model family -> the module that defines it. A family missing here (a new one) is
reached through ``equivox.models`` like any other module: editing it then changes the
fingerprint of every model's training, which is safe, only not minimal."""
LOG_NAMES = {"log", "logger", "logging", "LOG", "LOGGER"}
LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
HELP_KEYWORDS = {"help", "description", "epilog", "usage"}
DIGEST_CHARS = 16


def package_dir() -> Path:
    """Where the imported ``equivox`` package lives (the code the jobs will run)."""
    spec = importlib.util.find_spec(PACKAGE)
    return Path(next(iter(spec.submodule_search_locations)))


def module_path(name: str, root: Path) -> Path | None:
    """``equivox.models.plain`` -> ``<root>/models/plain.py`` (or ``__init__.py``); None
    when ``name`` is not a module of the package (a class or function name)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class _Strip(ast.NodeTransformer):
    """Removes docstrings, logging statements and CLI help texts."""

    def _body(self, node):
        self.generic_visit(node)
        body = [s for s in node.body if not _is_log_call(s)]
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]
        node.body = body or [ast.Pass()]
        return node

    visit_Module = visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _body

    def generic_visit(self, node):
        super().generic_visit(node)
        for name in ("body", "orelse", "finalbody"):  # if/for/while/try/with bodies
            block = getattr(node, name, None)
            if isinstance(block, list) and not isinstance(node, (ast.Module, ast.FunctionDef,
                                                                  ast.AsyncFunctionDef, ast.ClassDef)):
                kept = [s for s in block if not _is_log_call(s)]
                setattr(node, name, kept or ([ast.Pass()] if block else []))
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in {"add_argument", "add_argument_group", "add_parser", "add_subparsers",
                    "add_mutually_exclusive_group", "ArgumentParser"}:
            node.keywords = [k for k in node.keywords if k.arg not in HELP_KEYWORDS]
        return node


def _is_log_call(stmt: ast.stmt) -> bool:
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
        return False
    func = stmt.value.func
    return (isinstance(func, ast.Attribute) and func.attr in LOG_METHODS
            and isinstance(func.value, ast.Name) and func.value.id in LOG_NAMES)


def normalised_source(path: Path) -> str:
    """The syntax tree of ``path`` without what cannot change a result, as text."""
    tree = _Strip().visit(ast.parse(Path(path).read_text(), filename=str(path)))
    return ast.dump(tree, include_attributes=False)


def imported_modules(path: Path, root: Path) -> set[str]:
    """Package modules that ``path`` imports anywhere in its body (relative imports
    resolved; ``from pkg import name`` counts ``pkg.name`` when that is a module)."""
    tree = ast.parse(Path(path).read_text(), filename=str(path))
    own = _module_name(path, root) if Path(path).is_relative_to(root) else None
    package = (own if path.name == "__init__.py" else own.rpartition(".")[0]) if own else None
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if package is None:
                    continue
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            # importing a.b.c runs a/__init__ and a/b/__init__ too
            parts = name.split(".")
            for end in range(1, len(parts) + 1):
                if module_path(".".join(parts[:end]), root) is not None:
                    found.add(".".join(parts[:end]))
    return found


def closure(roots: list[Path], root: Path, skip: frozenset[str] = frozenset()) -> dict[str, Path]:
    """Module name -> file of every package module reachable from ``roots`` by imports,
    not entering the modules in ``skip``."""
    seen: dict[str, Path] = {}
    todo = [m for r in roots for m in imported_modules(r, root)]
    while todo:
        name = todo.pop()
        if name in seen or name in skip:
            continue
        seen[name] = module_path(name, root)
        todo.extend(imported_modules(seen[name], root))
    return seen


@lru_cache(maxsize=None)
def _code_version(script: str, family: str | None, root: str, stamp: tuple) -> str:
    root_path = Path(root)
    if family is None:
        modules = closure([Path(script)], root_path)
    else:
        others = frozenset(FAMILY_MODULES.values())
        modules = closure([Path(script)], root_path, skip=others)
        if family in FAMILY_MODULES:
            # the family module and what it imports; the packages above it are counted
            # already (and through them every family would come back)
            own = module_path(FAMILY_MODULES[family], root_path)
            packages = frozenset(n for n in modules if module_path(n, root_path).name == "__init__.py")
            modules.update({FAMILY_MODULES[family]: own, **closure([own], root_path, skip=packages)})
        else:  # unknown family: every family module counts
            modules.update(closure([Path(script)], root_path))
    digest = hashlib.sha256(normalised_source(Path(script)).encode())
    for name in sorted(modules):
        digest.update(f"\0{name}\0".encode())
        digest.update(normalised_source(modules[name]).encode())
    return digest.hexdigest()[:DIGEST_CHARS]


def code_version(script: str | Path, family: str | None = None, root: str | Path | None = None) -> str:
    """Fingerprint of ``script`` and the package code it runs (16 hex characters).

    ``family``: count only this model family's module among the family modules (for
    training one model). ``root``: the package folder, default the imported one.
    Cached per process by the files' modification times.
    """
    root = Path(root) if root is not None else package_dir()
    stamp = tuple(sorted((str(p), p.stat().st_mtime_ns) for p in root.rglob("*.py")))
    return _code_version(str(Path(script).resolve()), family, str(root.resolve()), stamp)
