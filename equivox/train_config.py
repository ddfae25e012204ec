"""Constraints between keys of config ``train`` that the schema cannot express,
checked for the config and for every run of a study with its own training values
(:mod:`equivox.config`, :mod:`equivox.study`). Torch-free.
"""
from __future__ import annotations


def train_problems(train: dict) -> list[str]:
    """Constraints between keys of config ``train`` (checked for the config and for every
    run of a study with its own training values)."""
    problems = []
    if train["max_steps"] is None and train["max_compute_h"] is None:
        problems.append("config train.max_steps / train.max_compute_h: set at least one budget "
                        "(a step count >= 1, or compute hours > 0)")
    for key in ("val_every", "checkpoint_every"):
        if train[key] % train["log_every"]:
            problems.append(f"config train.{key}: must be a multiple of train.log_every "
                            f"({train['log_every']}), got {train[key]}")
    problems += train_choice_problems(train)
    return problems


def train_choice_problems(train: dict) -> list[str]:
    """Combinations of the optimizer, schedule and stopping keys of config ``train``
    (defaults filled) that cannot work or would be silently ignored."""
    problems = []
    schedule = train["lr_schedule"]
    if train["nesterov"] and train["optimizer"] != "sgd":
        problems.append(f"config train.nesterov: true needs optimizer sgd, got optimizer {train['optimizer']!r}")
    elif train["nesterov"] and train["momentum"] == 0:
        problems.append("config train.nesterov: true needs train.momentum > 0 (Nesterov momentum "
                        "with momentum 0 is undefined), got momentum 0")
    if schedule == "cosine":
        if train["max_steps"] is None:
            problems.append("config train.lr_schedule: cosine decays over train.max_steps, which is null "
                            "(set max_steps, or use constant, step or plateau with a compute budget)")
        else:
            short = [name for name, steps in {"max_steps": train["max_steps"],
                                              **(train["max_steps_per_model"] or {})}.items()
                     if steps <= train["warmup_steps"]]
            if short:
                problems.append(f"config train.warmup_steps: {train['warmup_steps']} leaves no step to decay "
                                f"over under lr_schedule cosine ({', '.join(short)} <= warmup_steps)")
    if schedule == "step" and train["lr_step_every"] is None:
        problems.append("config train.lr_step_every: required for lr_schedule step (steps between decays)")
    if schedule != "step" and train["lr_step_every"] is not None:
        problems.append(f"config train.lr_step_every: used by lr_schedule step only, got lr_schedule "
                        f"{schedule!r} (set it to null)")
    if schedule in ("cosine", "plateau") and train["min_lr"] >= train["lr"]:
        problems.append(f"config train.min_lr: must be below train.lr ({train['lr']:g}) for lr_schedule "
                        f"{schedule}, got {train['min_lr']:g}")
    if schedule in ("constant", "step") and train["min_lr"] > 0:
        problems.append(f"config train.min_lr: used by lr_schedule cosine and plateau only, got lr_schedule "
                        f"{schedule!r} (set it to 0)")
    from .run_record import TENSORBOARD_MISSING, tensorboard_available

    if train["tensorboard"] and not tensorboard_available():
        problems.append(TENSORBOARD_MISSING)
    return problems
