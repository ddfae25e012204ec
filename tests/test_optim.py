"""Optimizer and learning-rate schedule construction (equivox/optim.py), without training."""
import math
from types import SimpleNamespace

import pytest
import torch

from equivox.config import FillingValidator, load_schema
from equivox.optim import LrSchedule, Validations, build_optimizer


def settings(**overrides):
    """Config ``train`` with the schema's defaults, these values on top."""
    train = {}
    FillingValidator(load_schema("config")["properties"]["train"]).validate(train)
    train.update(overrides)
    return SimpleNamespace(**train)


def curve(s, steps):
    schedule = LrSchedule(build_optimizer([torch.zeros(1, requires_grad=True)], s), s)
    return [schedule.lr_at(t) for t in range(steps)]


def toy_run(s, steps=5, seed=0):
    """Parameters of a small linear model after ``steps`` steps under settings ``s``."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(6, 3)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    optimizer = build_optimizer(model.parameters(), s)
    schedule = LrSchedule(optimizer, s)
    for t in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        schedule.apply(t)
        optimizer.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_defaults_are_adam_at_a_constant_rate_as_before():
    s = settings()
    assert (s.optimizer, s.weight_decay, s.lr_schedule, s.warmup_steps, s.grad_clip_norm,
            s.early_stopping_patience, s.tensorboard) == ("adam", 0, "constant", 0, None, None, False)
    assert curve(s, 7) == [s.lr] * 7
    # bit for bit what the trainer did before: torch.optim.Adam(params, lr=lr)
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    optimizer = torch.optim.Adam(model.parameters(), lr=s.lr)
    for _ in range(5):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    assert torch.equal(toy_run(s), torch.cat([p.detach().flatten() for p in model.parameters()]))


def test_optimizers_are_built_as_configured():
    params = [torch.zeros(2, requires_grad=True)]
    adam = build_optimizer(params, settings(weight_decay=0.01))
    assert type(adam) is torch.optim.Adam and adam.defaults["weight_decay"] == 0.01
    adamw = build_optimizer(params, settings(optimizer="adamw"))
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["weight_decay"] == 0  # not torch's 0.01
    sgd = build_optimizer(params, settings(optimizer="sgd", lr=0.1, momentum=0.8, nesterov=True, weight_decay=1e-4))
    assert type(sgd) is torch.optim.SGD
    assert (sgd.defaults["momentum"], sgd.defaults["nesterov"], sgd.defaults["weight_decay"]) == (0.8, True, 1e-4)


def test_coupled_and_decoupled_weight_decay_differ():
    plain = toy_run(settings(lr=0.05))
    coupled = toy_run(settings(lr=0.05, weight_decay=0.1))
    decoupled = toy_run(settings(lr=0.05, weight_decay=0.1, optimizer="adamw"))
    assert torch.equal(toy_run(settings(lr=0.05, optimizer="adamw")), plain)  # adamw without decay = adam
    assert not torch.allclose(coupled, plain) and not torch.allclose(decoupled, plain)
    assert not torch.allclose(coupled, decoupled, atol=1e-4)
    # decoupled: each step shrinks the weights by lr * weight_decay besides the Adam update
    assert decoupled.norm() < plain.norm()
    sgd = toy_run(settings(optimizer="sgd", lr=0.1))
    sgd_decay = toy_run(settings(optimizer="sgd", lr=0.1, weight_decay=0.1))
    assert not torch.allclose(sgd, sgd_decay)


def test_linear_warm_up_then_constant():
    s = settings(lr=0.01, warmup_steps=4)
    assert curve(s, 6) == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01])


def test_cosine_endpoints_and_midpoint():
    s = settings(lr=0.1, lr_schedule="cosine", max_steps=10, min_lr=0.001)
    lrs = curve(s, 12)
    assert lrs[0] == 0.1 and lrs[5] == pytest.approx((0.1 + 0.001) / 2)
    assert lrs[10] == pytest.approx(0.001) and lrs[11] == pytest.approx(0.001)  # floor past max_steps
    assert all(a > b for a, b in zip(lrs[:10], lrs[1:11]))


def test_cosine_after_warm_up():
    s = settings(lr=0.1, lr_schedule="cosine", max_steps=12, warmup_steps=4)
    lrs = curve(s, 13)
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lrs[4] == 0.1                                       # the decay starts after the warm-up
    assert lrs[8] == pytest.approx(0.05)                       # halfway through the 8 decay steps
    assert lrs[12] == pytest.approx(0.0, abs=1e-15)


def test_step_decay():
    s = settings(lr=1.0, lr_schedule="step", lr_step_every=3, lr_gamma=0.5)
    assert curve(s, 8) == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]
    warm = settings(lr=1.0, lr_schedule="step", lr_step_every=3, lr_gamma=0.5, warmup_steps=2)
    assert curve(warm, 5) == [0.5, 1, 1, 0.5, 0.5]


def test_plateau_decays_after_patience_validations_without_improvement():
    s = settings(lr=1e-3, lr_schedule="plateau", plateau_patience=2, lr_gamma=0.1, min_lr=5e-6)
    schedule = LrSchedule(build_optimizer([torch.zeros(1, requires_grad=True)], s), s)
    decayed = [schedule.after_validation(loss) for loss in (1.0, 0.9, 0.95, 0.9)]
    assert decayed == [False, False, False, True]              # 0.9 again is no improvement
    assert schedule.lr_at(100) == pytest.approx(1e-4)
    assert [schedule.after_validation(loss) for loss in (0.8, 0.85, 0.81)] == [False, False, True]
    assert schedule.lr_at(100) == pytest.approx(1e-5)
    assert [schedule.after_validation(loss) for loss in (0.9, 0.9)] == [False, True]
    assert schedule.lr_at(100) == 5e-6                         # the floor
    assert [schedule.after_validation(loss) for loss in (0.9, 0.9)] == [False, False]
    assert schedule.lr_at(100) == 5e-6
    # the state goes into a checkpoint and comes back
    again = LrSchedule(build_optimizer([torch.zeros(1, requires_grad=True)], s), s)
    again.load_state_dict(schedule.state_dict())
    assert again.lr_at(100) == schedule.lr_at(100) and again.state_dict() == schedule.state_dict()


def test_plateau_with_warm_up():
    s = settings(lr=1.0, lr_schedule="plateau", plateau_patience=1, warmup_steps=2)
    schedule = LrSchedule(build_optimizer([torch.zeros(1, requires_grad=True)], s), s)
    schedule.after_validation(1.0)
    schedule.after_validation(1.0)
    assert [schedule.lr_at(t) for t in range(3)] == pytest.approx([0.05, 0.1, 0.1])


def test_apply_sets_every_parameter_group():
    s = settings(lr=1.0, lr_schedule="step", lr_step_every=1, lr_gamma=0.5)
    a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    optimizer = build_optimizer([{"params": [a]}, {"params": [b]}], s)
    assert LrSchedule(optimizer, s).apply(2) == 0.25
    assert [g["lr"] for g in optimizer.param_groups] == [0.25, 0.25]


@pytest.mark.parametrize("overrides, words", [
    ({"lr_schedule": "cosine", "max_steps": None}, ["train.lr_schedule", "max_steps"]),
    ({"lr_schedule": "step"}, ["train.lr_step_every", "required"]),
    ({"lr_schedule": "linear"}, ["train.lr_schedule", "allowed"]),
])
def test_a_schedule_that_cannot_work_is_refused(overrides, words):
    s = settings(**overrides)
    with pytest.raises(ValueError) as error:
        LrSchedule(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), s)
    assert all(word in str(error.value) for word in words), str(error.value)


def test_best_validation_and_early_stopping():
    weights = {"w": torch.zeros(2)}
    seen = Validations(patience=2)
    assert seen.add(0, 2.0, 0.1, lambda: weights)
    weights["w"] += 1                                           # the copy is not a view
    assert seen.add(4, 1.0, 0.3, lambda: weights)
    weights["w"] += 1
    assert not seen.add(8, 1.0, 0.5, lambda: weights)          # a tie keeps the earlier step
    assert not seen.should_stop()
    assert not seen.add(12, math.nan, 0.0, lambda: weights)    # NaN is never best
    assert seen.should_stop()
    assert seen.best == {"step": 4, "val_loss": 1.0, "val_accuracy": 0.3}
    assert torch.equal(seen.best_weights["w"], torch.ones(2))
    restored = Validations(patience=2)
    restored.load_state_dict(seen.state_dict())
    assert restored.should_stop() and restored.best == seen.best
    never = Validations(patience=None)
    for step in range(5):
        never.add(step, 1.0, 0.0, lambda: weights)
    assert not never.should_stop() and never.since_best == 4


def test_max_steps_is_a_result_setting_under_cosine_only():
    from equivox.run_record import settings_fingerprint
    constant = vars(settings(max_steps=100))
    assert settings_fingerprint(constant) == settings_fingerprint({**constant, "max_steps": 200})
    assert settings_fingerprint(constant) == settings_fingerprint({**constant, "tensorboard": True})
    cosine = vars(settings(max_steps=100, lr_schedule="cosine"))
    assert settings_fingerprint(cosine) != settings_fingerprint({**cosine, "max_steps": 200})
    assert settings_fingerprint(cosine) == settings_fingerprint({**cosine, "max_compute_h": 2.0})
