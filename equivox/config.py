"""Config validation with messages that name the key: ``config origins.radius: ...``."""
from __future__ import annotations

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
    splits = config["splits"]
    total = splits["train"] + splits["val"] + splits["test"]
    if abs(total - 1) > 1e-6:
        raise ConfigError(f"invalid configuration:\n  config splits: train + val + test "
                          f"must be 1, got {total:g}")
