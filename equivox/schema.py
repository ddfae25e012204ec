"""The packaged schemas (``equivox/schemas/``) and validation against them, in one
error format: ``<document> <dotted key>: <what is wrong> (<what the key is>)``, e.g.
``config origins.radius: -1 is less than the minimum of 0`` or
``architectures arch_3.width: '2' is not of type 'integer'``.

The schemas are the only place a default lives: validation writes every missing key's
default into the document it checks. The workflow's own checks build on this
(:mod:`equivox.config`, :mod:`equivox.study`). Nothing here imports torch.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jsonschema
import yaml


class ConfigError(ValueError):
    """A config key or value the schema rejects."""


def schema_text(name: str) -> str:
    """The YAML text of the packaged schema ``name`` (``config`` or ``architectures``)."""
    return resources.files("equivox").joinpath("schemas", f"{name}.schema.yaml").read_text()


def load_schema(name: str) -> dict:
    """The packaged schema ``name`` (``config`` or ``architectures``), parsed."""
    return yaml.safe_load(schema_text(name))


def _properties_with_defaults(validator, properties, instance, schema):
    """jsonschema's ``properties`` that first writes each property's ``default`` into
    the instance (the jsonschema FAQ recipe)."""
    if validator.is_type(instance, "object"):
        for key, subschema in properties.items():
            if isinstance(subschema, dict) and "default" in subschema:
                instance.setdefault(key, copy.deepcopy(subschema["default"]))
    yield from jsonschema.Draft202012Validator.VALIDATORS["properties"](validator, properties, instance, schema)


FillingValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator,
                                                {"properties": _properties_with_defaults})
"""A Draft 2020-12 validator that fills defaults into the instance it validates."""


@lru_cache(maxsize=None)
def _validator(name: str):
    return FillingValidator(load_schema(name))


def _describe(error: jsonschema.ValidationError, document: str) -> str:
    """One problem as ``<document> <dotted key>: <message> (<first sentence of the
    key's description>)``."""
    path = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return f"{document} {'.'.join(path + extra[:1])}: unknown key (allowed here: {', '.join(allowed)})"
    where = ".".join(path) or "(top level)"
    if error.validator == "not":
        return f"{document} {where}: does not apply here (with this layout, block or family)"
    described = error.schema.get("description", "").strip().split(". ")[0]
    hint = f" ({described})" if described else ""
    return f"{document} {where}: {error.message}{hint}"


def schema_problems(instance: dict, name: str, document: str) -> list[str]:
    """Validate ``instance`` in place against the packaged schema ``name``, filling
    defaults; one message per problem (:func:`_describe`), in key order."""
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    # A failing group of keys also leaves its keys "unevaluated"; report only the cause.
    failing = {e.absolute_path[0] for e in errors
               if len(e.absolute_path) and e.validator != "unevaluatedProperties"}
    return [_describe(e, document) for e in errors
            if not (e.validator == "unevaluatedProperties" and e.absolute_path and e.absolute_path[0] in failing)]


def schema_defaults(schema: dict):
    """The defaults a schema (or one of its properties) fills in: an object's
    properties recursively, a value's ``default``; None where there is none."""
    if "properties" in schema and schema.get("default", {}) is not None:
        values = copy.deepcopy(schema.get("default", {}))
        values.update({key: schema_defaults(sub) for key, sub in schema["properties"].items()
                       if "default" in sub or "properties" in sub})
        return values
    return copy.deepcopy(schema.get("default"))


def default_config() -> dict:
    """The workflow config made of the schema's defaults alone (for library use and
    tests: every section present, every key at its default)."""
    return schema_defaults(load_schema("config"))


def validate_architectures(architectures: dict, source: str = "architecture set") -> dict:
    """Validate a name -> spec mapping; return a copy with the schema's defaults filled.

    Raises ConfigError (a ValueError) listing every problem as
    ``architectures <name>.<key>: ...``.
    """
    filled = copy.deepcopy(architectures)
    problems = schema_problems(filled, "architectures", "architectures")
    if problems:
        raise ConfigError(f"{source}: invalid architectures:\n  " + "\n  ".join(problems))
    return filled


def load_architectures(path: str | Path) -> dict:
    """Read an architecture set (YAML), validate it, fill defaults: ``{name: spec}``."""
    return validate_architectures(yaml.safe_load(Path(path).read_text()), source=str(path))


def facet_problems(specs: dict, facet: str | None) -> list[str]:
    """The curve figures' facet key must be a key of at least one of the architecture
    ``specs`` (name -> spec, defaults filled) that are run; models without it share a panel."""
    allowed = sorted({key for spec in specs.values() for key in spec})
    if facet is None or facet in allowed:
        return []
    return [f"config analysis.figures.facet: {facet!r} is not a key of any configured "
            f"architecture (allowed: {', '.join(allowed)}; or null for one panel)"]
