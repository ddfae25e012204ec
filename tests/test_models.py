"""Architecture zoo: configs, shapes, gradients, exact equivariance, initialisation."""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from equivox.escnn_setup import ENV_VAR, import_escnn
from equivox.models import (build_model, count_parameters, fields, load_architectures,
                            model_summary, validate_architectures)
from equivox.task import FACE_NAMES, FACES
from equivox.models.escnn_cnn import LAYOUTS, layout_sides

ROOT = Path(__file__).resolve().parents[1]
DEMO = load_architectures(ROOT / "config/architectures/demo.yaml")
FULL = load_architectures(ROOT / "config/architectures/full.yaml")
VIEWS = (2, 4, 21, 21, 21)  # two views of 4 element channels, 21^3 voxels

# Tiny encoders covering every layout, block and several Fourier functions, plus the
# demo's. Whole networks are checked with average pooling: extreme pooling picks the
# larger magnitude of two opposite-sign values, so where those nearly tie, float32
# rounding (which differs between a view and its rotation) can flip the pick. The pool
# itself is exactly equivariant, checked alone in float64 below.
def average_pooled(spec: dict) -> dict:
    pools = spec["family"] == "escnn_densenet" or spec.get("block") == "alpha"
    return {**spec, "pool": "average"} if pools else spec


TINY_EQUIVARIANT = {name: average_pooled(spec) for name, spec in {
    "arch_0": dict(family="escnn_cnn", layout="arch_0", channels=[1, 1, 1, 1, 1]),
    "arch_1_kernel_3": dict(family="escnn_cnn", layout="arch_1", width=1, kernel_size=3,
                            fourier_function="gelu"),
    "arch_1_kernel_5": dict(family="escnn_cnn", layout="arch_1", width=1, kernel_size=5,
                            fourier_function="first_hermite"),
    "arch_2": dict(family="escnn_cnn", layout="arch_2", width=1, repeats=1,
                   fourier_function="leaky_hardshrink"),
    "arch_3": dict(family="escnn_cnn", layout="arch_3", width=1, repeats=1, fourier_function="silu"),
    "resnet_escnn": dict(family="escnn_resnet", block="escnn", outer_channels=[1, 1, 2, 2],
                         inner_channels=[1, 1, 1]),
    "resnet_alpha": dict(family="escnn_resnet", block="alpha", outer_channels=[1, 1, 2, 2],
                         inner_channels=[1, 1, 1], repeats=[1, 2, 1], fourier_function="relu"),
    "densenet": dict(family="escnn_densenet", transition_channels=[1, 1, 2, 2], growth_channels=1,
                     bottleneck_factor=1, block_depth=[1, 2, 1]),
    **{name: spec for name, spec in DEMO.items() if spec["family"].startswith("escnn_")},
}.items()}


@pytest.fixture(scope="session", autouse=True)
def escnn_cache(tmp_path_factory):
    """escnn's caches in $EQUIVOX_ESCNN_CACHE if set, else in this session's temp dir."""
    cache = os.environ.get(ENV_VAR) or tmp_path_factory.getbasetemp() / "escnn_cache"
    import_escnn(cache)
    return cache


def cube_rotations() -> list[np.ndarray]:
    """The 24 rotations of the cube: signed permutation matrices of determinant 1."""
    rotations = []
    for columns in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            rotation = np.zeros((3, 3), dtype=int)
            rotation[range(3), columns] = signs
            if round(np.linalg.det(rotation)) == 1:
                rotations.append(rotation)
    return rotations


def rotate_voxels(x: torch.Tensor, rotation: np.ndarray) -> torch.Tensor:
    """Rotate the last three (x, y, z) axes of ``x`` exactly: ``out(v) = x(R^T v)``
    about the grid centre, as a permutation of axes and flips."""
    lead = x.dim() - 3
    source = [int(np.flatnonzero(row)[0]) for row in rotation]  # output axis b reads axis source[b]
    out = x.permute(*range(lead), *(lead + a for a in source))
    flips = [lead + b for b in range(3) if rotation[b, source[b]] < 0]
    return out.flip(flips) if flips else out


def face_permutation(rotation: np.ndarray) -> list[int]:
    """Index j of the face each face i comes from: ``d_j = R^T d_i``."""
    return [int(np.flatnonzero((FACES == rotation.T @ d).all(axis=1))[0])
            for d in FACES]


def settle_batch_norm(model: torch.nn.Module, input_shape: tuple[int, ...]) -> None:
    """Give batch norms non-trivial running statistics, then switch to eval mode."""
    model.train()
    with torch.no_grad():
        model(torch.randn(input_shape))
    model.eval()


# --- configs --------------------------------------------------------------------------

def test_configs_name_the_study_architectures():
    assert 4 <= len(DEMO) <= 6
    assert {spec["family"] for spec in DEMO.values()} >= {"escnn_cnn", "plain_cnn"}
    expected = {"arch_0", "arch_2_width_7_repeats_1", "arch_2_width_14_repeats_4",
                "arch_3_width_7_repeats_1", "arch_3_width_14_repeats_4"}
    expected |= {f"arch_1_width_{w}_kernel_{k}" for w in (7, 14) for k in (3, 5)}
    assert expected <= FULL.keys()
    assert {spec["family"] for spec in FULL.values()} == {
        "escnn_cnn", "escnn_resnet", "escnn_densenet", "plain_cnn", "plain_resnet", "plain_densenet"}
    assert {spec["block"] for spec in FULL.values() if "block" in spec} == {"escnn", "alpha"}


def test_loading_fills_schema_defaults():
    spec = validate_architectures({"r": dict(family="escnn_resnet", block="alpha",
                                             outer_channels=[1, 2], inner_channels=[1])})["r"]
    assert spec["pool"] == "extreme" and spec["repeats"] == 1 and spec["head_channels"] == [512]
    assert "pool" not in validate_architectures(
        {"r": dict(family="escnn_resnet", block="escnn", outer_channels=[1, 2],
                   inner_channels=[1])})["r"]


@pytest.mark.parametrize("spec, message", [
    (dict(family="escnn_cnn", layout="arch_3", width=2, repeats=1, depth=3), "'depth'"),
    (dict(family="escnn_cnn", layout="arch_3", width="2", repeats=1), "bad.width"),
    (dict(family="escnn_cnn", layout="arch_0", channels=[1, 2, 3, 4, 5], width=3), "bad.width"),
    (dict(family="escnn_cnn", layout="arch_2", width=3), "'repeats' is a required"),
    (dict(family="plain_cnn", layout="arch_1", width=1, kernel_size=4), "bad.kernel_size"),
    (dict(family="escnn_resnet", block="escnn", outer_channels=[1, 2], inner_channels=[1],
          pool="extreme"), "bad.pool"),
    (dict(family="vgg", width=3), "bad.family"),
])
def test_invalid_specs_name_architecture_and_key(spec, message):
    with pytest.raises(ValueError, match="architectures bad") as error:
        validate_architectures({"bad": spec})
    assert message in str(error.value)


def test_structural_errors_name_the_architecture():
    spec = dict(family="plain_resnet", outer_channels=[2, 4, 8], inner_channels=[2])
    with pytest.raises(ValueError, match="architecture 'short': inner_channels"):
        build_model("short", spec)
    with pytest.raises(ValueError, match="architecture 'deep': cannot pool a side of 2"):
        build_model("deep", dict(family="plain_resnet", outer_channels=[2] * 6,
                                 inner_channels=[2] * 5))
    with pytest.raises(ValueError, match="equivariant head needs an equivariant encoder"):
        build_model("plain", DEMO["plain_arch_3_width_2_repeats_1"], head="equivariant")


@pytest.mark.parametrize("layout, kwargs, sides", [
    ("arch_0", dict(channels=[1] * 5), [21, 9, 7, 5, 3, 1]),
    ("arch_1", dict(width=1, kernel_size=3), list(range(21, 0, -2))),
    ("arch_1", dict(width=1, kernel_size=5), [21, 17, 13, 9, 5, 1]),
    ("arch_2", dict(width=1, repeats=2), [21, 19, 17, 9, 9, 9, 5, 5, 5, 3, 1]),
    ("arch_3", dict(width=1, repeats=1), [21, 19, 9, 9, 7, 3, 3, 1]),
])
def test_layout_sides(layout, kwargs, sides):
    assert layout_sides(LAYOUTS[layout](**kwargs)) == sides


def test_arch_1_width_grows_with_inverse_side():
    assert [conv.channels for conv in LAYOUTS["arch_1"](width=7, kernel_size=5)] == [7, 9, 11, 16, 29]


def test_cube_face_order():
    assert FACE_NAMES == ("+x", "-x", "+y", "-y", "+z", "-z")
    for name, direction in zip(FACE_NAMES, FACES):
        axis = "xyz".index(name[1])
        assert direction[axis] == (1 if name[0] == "+" else -1) and abs(direction).sum() == 1


# --- shapes and gradients ---------------------------------------------------------------

@pytest.mark.parametrize("head", ["mlp", "equivariant"])
@pytest.mark.parametrize("name", DEMO)
def test_demo_models_train_on_cpu(name, head):
    if head == "equivariant" and not DEMO[name]["family"].startswith("escnn_"):
        pytest.skip("plain encoders have no equivariant head")
    torch.manual_seed(0)
    model = build_model(name, DEMO[name], head=head)
    logits = model(torch.randn(2, *VIEWS))
    assert logits.shape == (2, len(FACE_NAMES))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 5])).backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), parameter_name


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL)
def test_full_models_build_and_map_views_to_logits(name):
    # ~100 s in all on 2 cores with the fast He init; the eval-mode forward also checks
    # that every full-size layout reaches 1x1x1 (arch_1 width 14 kernel 5 peaks ~6 GB).
    model = build_model(name, FULL[name]).eval()
    with torch.no_grad():
        assert model(torch.randn(1, *VIEWS)).shape == (1, len(FACE_NAMES))


def test_model_summary_adds_up():
    model = build_model("resnet_alpha_tiny", DEMO["resnet_alpha_tiny"])
    rows = model_summary(model, (2, *VIEWS))
    assert sum(params for _, _, params in rows) == count_parameters(model)
    names = [name for name, _, _ in rows]
    assert names[-1].startswith("head.") and rows[-1][1] == (2, 6)
    encoder_rows = [row for row in rows if row[0].startswith("encoder.")]
    assert encoder_rows[0][1][2:] == (17, 17, 17) and encoder_rows[-1][1][2:] == (1, 1, 1)
    assert not any(".basisexpansion" in name for name in names)  # escnn internals hidden


# --- equivariance -------------------------------------------------------------------------

@pytest.mark.parametrize("name", TINY_EQUIVARIANT)
def test_encoder_is_equivariant_to_cube_rotations(name):
    torch.manual_seed(0)
    encoder = build_model(name, TINY_EQUIVARIANT[name]).encoder
    settle_batch_norm(encoder, (2, *VIEWS[1:]))
    x = torch.randn(1, *VIEWS[1:])
    rotations = cube_rotations()
    with torch.no_grad():
        features = encoder(torch.cat([x] + [rotate_voxels(x, r) for r in rotations])).flatten(1)
    for rotation, rotated in zip(rotations, features[1:]):
        rho = encoder.out_type.representation(fields.group_element(rotation))
        expected = torch.as_tensor(rho, dtype=features.dtype) @ features[0]
        assert (rotated - expected).norm() < 1e-4 * expected.norm(), rotation.tolist()


@pytest.mark.parametrize("name", ["arch_3", "resnet_alpha", "densenet"])
def test_equivariant_head_logits_permute_with_the_faces(name):
    torch.manual_seed(0)
    # gelu: a one-field ReLU head can be dead at init (all-zero logits, nothing to compare)
    spec = dict(TINY_EQUIVARIANT[name], head_channels=[70, 35], fourier_function="gelu")
    model = build_model(name, spec, head="equivariant")
    settle_batch_norm(model, (4, *VIEWS))
    assert logit_permutation_error(model) < 1e-4


def test_logit_permutation_check_fails_without_equivariance():
    torch.manual_seed(0)
    plain = build_model("plain", DEMO["plain_arch_3_width_2_repeats_1"])
    settle_batch_norm(plain, (4, *VIEWS))
    assert logit_permutation_error(plain) > 0.1


def logit_permutation_error(model: torch.nn.Module) -> float:
    """Largest change, relative to the logits' scale, between the logits of both views
    rotated and the logits permuted as the rotation permutes the faces."""
    x = torch.randn(1, *VIEWS)
    rotations = cube_rotations()
    with torch.no_grad():
        logits = model(torch.cat([x] + [rotate_voxels(x, r) for r in rotations]))
    scale = logits[0].abs().max()
    assert scale > 0, "all-zero logits: the comparison would be vacuous"
    return max(float((rotated - logits[0][face_permutation(r)]).abs().max() / scale)
               for r, rotated in zip(rotations, logits[1:]))


# --- building blocks ------------------------------------------------------------------------

def test_fast_he_init_matches_escnn_bitwise():
    enn = fields.escnn_module().nn
    mixed = enn.FieldType(fields.gspace(), list(fields.trivial_type(2).representations)
                          + list(fields.fourier_type(2).representations))
    conv = enn.R3Conv(mixed, fields.gated_type(fields.fourier_type(2)), 3, initialize=False)
    linear = enn.Linear(fields.fiber_type(mixed), fields.hidden_fourier_type(3), initialize=False)
    for module in (conv, linear):
        torch.manual_seed(1)
        enn.init.generalized_he_init(module.weights.data, module.basisexpansion)
        expected = module.weights.detach().clone()
        torch.manual_seed(1)
        fields.he_init_(module.weights.data, module.basisexpansion)
        assert torch.equal(module.weights, expected)


def test_gaussian_downsample_keeps_constants_and_centres():
    downsample = fields.GaussianDownsample3d(sigma=0.6, stride=2)
    out = downsample(torch.full((1, 3, 9, 9, 9), 2.5))
    assert out.shape == (1, 3, 5, 5, 5)
    torch.testing.assert_close(out, torch.full_like(out, 2.5))


@pytest.mark.parametrize("mode", ["extreme", "average"])
def test_fourier_pool_is_equivariant_and_halves_odd_sides(mode):
    field_type = fields.fourier_type(2)
    pool = fields.FourierPool3d(field_type, mode).double()
    x = torch.randn(1, field_type.size, 9, 9, 9, dtype=torch.float64)
    out = pool(field_type(x))
    assert out.type == field_type and out.shape == (1, field_type.size, 5, 5, 5)
    for rotation in cube_rotations():
        g = fields.group_element(rotation)
        rotated_in = field_type(rotate_voxels(x, rotation)).transform_fibers(g)
        rotated_out = field_type(rotate_voxels(out.tensor, rotation)).transform_fibers(g)
        # escnn's thomson_cube grid is optimised in float32: it maps onto itself under the
        # cube's rotations to ~1.3e-7, which bounds how exact the extreme pool can be
        atol = 1e-12 if mode == "average" else 1e-5
        torch.testing.assert_close(pool(rotated_in).tensor, rotated_out.tensor, rtol=0, atol=atol)


def test_views_and_models_share_the_task_geometry():
    """The faces the sampler translates view B along are those the equivariant head reads
    its logits at, and every encoder maps the task's view side to 1x1x1."""
    from equivox import views
    from equivox.models import siamese
    from equivox.task import INPUT_SIDE

    assert views.FACES is FACES and siamese.FACES is FACES and views.FACE_NAMES is FACE_NAMES
    assert layout_sides(LAYOUTS["arch_3"](width=2, repeats=1))[-1] == 1
    assert INPUT_SIDE == VIEWS[-1]
