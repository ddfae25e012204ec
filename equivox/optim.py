"""Optimizer, learning-rate schedule and validation bookkeeping of a training run.

Everything here is deterministic and resumable: the learning rate of step ``t`` (the
step about to be taken, 0-based) is a pure function of ``t`` and of the plateau state,
and that state, like the best-validation and early-stopping bookkeeping, is a small dict
saved in every checkpoint (:meth:`LrSchedule.state_dict`, :meth:`Validations.state_dict`).

The settings (config ``train``, docs/training.md "Optimizer and schedule"):

- ``optimizer``: ``adam`` (default; ``weight_decay`` is L2 added to the gradient,
  torch's coupled form), ``adamw`` (decoupled weight decay), ``sgd`` (``momentum``,
  ``nesterov``; ``weight_decay`` coupled L2).
- ``lr_schedule``: ``constant`` (default), ``cosine`` (from ``lr`` at the end of the
  warm-up to ``min_lr`` at ``max_steps``), ``step`` (``lr * lr_gamma ** (t //
  lr_step_every)``), ``plateau`` (``lr`` times ``lr_gamma`` whenever ``plateau_patience``
  consecutive validations did not lower the best validation loss, never below
  ``min_lr``). ``warmup_steps`` multiplies every schedule by ``(t + 1) / warmup_steps``
  for ``t < warmup_steps``.
"""
from __future__ import annotations

import math

import torch

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine", "step", "plateau")


def build_optimizer(parameters, s) -> torch.optim.Optimizer:
    """The optimizer of settings ``s`` (``optimizer``, ``lr``, ``weight_decay``,
    ``momentum``, ``nesterov``). ``adam`` with ``weight_decay: 0`` is the optimizer of
    runs made before these settings existed."""
    if s.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=s.lr, weight_decay=s.weight_decay)
    if s.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=s.lr, weight_decay=s.weight_decay)
    if s.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=s.lr, momentum=s.momentum, nesterov=s.nesterov,
                               weight_decay=s.weight_decay)
    raise ValueError(f"config train.optimizer: {s.optimizer!r} (allowed: {', '.join(OPTIMIZERS)})")


class LrSchedule:
    """Sets the learning rate of every parameter group before each step (:meth:`apply`).

    Step-based for warm-up, cosine and step decay; ``plateau`` is driven by the
    validation losses (:meth:`after_validation`). The state (plateau scale, best loss,
    validations without improvement) goes into the checkpoint.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, s):
        if s.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"config train.lr_schedule: {s.lr_schedule!r} (allowed: {', '.join(LR_SCHEDULES)})")
        if s.lr_schedule == "cosine" and s.max_steps is None:
            raise ValueError("config train.lr_schedule: cosine decays over train.max_steps, which is null")
        if s.lr_schedule == "step" and not s.lr_step_every:
            raise ValueError("config train.lr_step_every: required (>= 1) for lr_schedule step")
        self.optimizer, self.s = optimizer, s
        self.scale, self.best, self.bad = 1.0, math.inf, 0

    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based: the step about to be taken)."""
        s = self.s
        if s.lr_schedule == "constant":
            lr = s.lr
        elif s.lr_schedule == "cosine":
            span = max(s.max_steps - s.warmup_steps, 1)
            progress = min(max(step - s.warmup_steps, 0) / span, 1.0)
            lr = s.min_lr + (s.lr - s.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        elif s.lr_schedule == "step":
            lr = s.lr * s.lr_gamma ** (step // s.lr_step_every)
        else:  # plateau
            lr = max(s.lr * self.scale, s.min_lr)
        if step < s.warmup_steps:
            lr *= (step + 1) / s.warmup_steps
        return lr

    def apply(self, step: int) -> float:
        """Set the learning rate of step ``step`` in every parameter group; returns it."""
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def after_validation(self, val_loss: float) -> bool:
        """Count a validation (``plateau`` only; anything else ignores it). Returns
        whether the learning rate was just decayed."""
        if self.s.lr_schedule != "plateau":
            return False
        if val_loss < self.best:
            self.best, self.bad = val_loss, 0
            return False
        self.bad += 1
        if self.bad < self.s.plateau_patience:
            return False
        self.bad = 0
        if self.s.lr * self.scale <= self.s.min_lr:
            return False  # at the floor already
        self.scale *= self.s.lr_gamma
        return True

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.best, self.bad = state["scale"], state["best"], state["bad"]


class Validations:
    """The best validation so far (lowest loss, ties: the earliest step; a NaN or
    infinite loss is never best) with a copy of its weights, and the validations since
    it improved (for early stopping)."""

    def __init__(self, patience: int | None):
        self.patience = patience
        self.best: dict | None = None   # step, val_loss, val_accuracy
        self.best_weights: dict | None = None
        self.since_best = 0

    def add(self, step: int, val_loss: float, val_accuracy: float, weights) -> bool:
        """Record a validation; ``weights`` (a callable returning the model's weights)
        is called only when this one is the new best. Returns whether it is."""
        if math.isfinite(val_loss) and (self.best is None or val_loss < self.best["val_loss"]):
            self.best = {"step": step, "val_loss": val_loss, "val_accuracy": val_accuracy}
            self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in weights().items()}
            self.since_best = 0
            return True
        self.since_best += 1
        return False

    def should_stop(self) -> bool:
        """Whether ``patience`` consecutive validations did not improve the best loss."""
        return self.patience is not None and self.since_best >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_weights": self.best_weights, "since_best": self.since_best}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_weights, self.since_best = state["best"], state["best_weights"], state["since_best"]
