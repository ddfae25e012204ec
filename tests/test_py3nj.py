"""The exact py3nj stand-in (third_party/py3nj) and what it buys: reproducible escnn filters."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from fractions import Fraction
from math import sqrt
from pathlib import Path

import numpy as np
import pytest
import py3nj
import torch

from equivox.escnn_setup import ENV_VAR, import_escnn

# <j1 m1 j2 m2 | J M>, Condon-Shortley phases, as in every standard table.
HALF = Fraction(1, 2)
TABULATED_CG = [
    ((HALF, HALF, HALF, -HALF, 1, 0), sqrt(1 / 2)),
    ((HALF, HALF, HALF, -HALF, 0, 0), sqrt(1 / 2)),
    ((HALF, -HALF, HALF, HALF, 0, 0), -sqrt(1 / 2)),
    ((1, 1, 1, -1, 0, 0), sqrt(1 / 3)),
    ((1, 0, 1, 0, 0, 0), -sqrt(1 / 3)),
    ((1, 0, 1, 0, 1, 0), 0.0),
    ((1, 0, 1, 0, 2, 0), sqrt(2 / 3)),
    ((1, 1, 1, 0, 2, 1), sqrt(1 / 2)),
    ((1, 1, 1, 0, 1, 1), sqrt(1 / 2)),
    ((1, 1, HALF, -HALF, HALF, HALF), sqrt(2 / 3)),
    ((1, 0, HALF, HALF, HALF, HALF), -sqrt(1 / 3)),
    ((2, 0, 2, 0, 0, 0), sqrt(1 / 5)),
    ((2, 2, 2, -2, 4, 0), sqrt(1 / 70)),
    ((2, 1, 1, -1, 1, 0), sqrt(3 / 10)),
    ((2, 1, 2, 1, 2, 2), -sqrt(3 / 7)),
    ((2, -2, 1, 1, 3, -1), sqrt(1 / 15)),
    ((Fraction(3, 2), HALF, 1, 1, Fraction(5, 2), Fraction(3, 2)), sqrt(3 / 5)),
]
# (j1 j2 j3; m1 m2 m3)
TABULATED_3J = [
    ((1, 1, 0, 0, 0, 0), -sqrt(1 / 3)),
    ((1, 1, 2, 0, 0, 0), sqrt(2 / 15)),
    ((2, 2, 2, 0, 0, 0), -sqrt(2 / 35)),
    ((HALF, HALF, 1, HALF, -HALF, 0), sqrt(1 / 6)),
]


def doubled(values):
    return [int(2 * v) for v in values]


@pytest.mark.parametrize("args, value", TABULATED_CG)
def test_clebsch_gordan_matches_tables(args, value):
    j1, m1, j2, m2, j, m = doubled(args)
    assert py3nj.clebsch_gordan(j1, j2, j, m1, m2, m) == pytest.approx(value, abs=1e-15)


@pytest.mark.parametrize("args, value", TABULATED_3J)
def test_wigner_3j_matches_tables(args, value):
    assert py3nj.wigner3j(*doubled(args)) == pytest.approx(value, abs=1e-15)


def cg_matrix(two_j1: int, two_j2: int) -> np.ndarray:
    """Rows (m1, m2), columns (J, M): the change of basis from product to coupled states."""
    m1 = np.arange(-two_j1, two_j1 + 1, 2)
    m2 = np.arange(-two_j2, two_j2 + 1, 2)
    coupled = [(j, m) for j in range(abs(two_j1 - two_j2), two_j1 + two_j2 + 1, 2)
               for m in range(-j, j + 1, 2)]
    rows = np.array(list(itertools.product(m1, m2)))
    cols = np.array(coupled)
    return py3nj.clebsch_gordan(two_j1, two_j2, cols[None, :, 0], rows[:, None, 0],
                                rows[:, None, 1], cols[None, :, 1], ignore_invalid=True)


@pytest.mark.parametrize("two_j1, two_j2", itertools.combinations_with_replacement(range(7), 2))
def test_clebsch_gordan_is_orthogonal(two_j1, two_j2):
    # both orthogonality relations: sums over (m1, m2) and over (J, M)
    c = cg_matrix(two_j1, two_j2)
    assert c.shape[0] == c.shape[1]
    np.testing.assert_allclose(c.T @ c, np.eye(len(c)), atol=1e-14)
    np.testing.assert_allclose(c @ c.T, np.eye(len(c)), atol=1e-14)


@pytest.fixture(scope="session", autouse=True)
def escnn_cache(tmp_path_factory):
    """escnn's caches in $EQUIVOX_ESCNN_CACHE if set, else in this session's temp dir."""
    cache = os.environ.get(ENV_VAR) or tmp_path_factory.getbasetemp() / "escnn_cache"
    import_escnn(cache)
    return cache


def test_escnn_uses_the_exact_coefficients():
    assert sys.modules["escnn.group.groups.so3group"].py3nj is py3nj


CHILD = textwrap.dedent("""
    import sys, torch
    from equivox.escnn_setup import import_escnn
    cache, weights, out = sys.argv[1:]
    import_escnn(cache)
    from equivox.models import fields
    torch.manual_seed(0)
    probe = torch.nn.ModuleList([  # one of each filter basis the zoo builds
        fields.conv3d(fields.trivial_type(4), fields.fourier_type(2), 5, bias=True),
        fields.conv3d(fields.fourier_type(2), fields.gated_type(fields.fourier_type(2)), 3),
        fields.linear(fields.fiber_type(fields.fourier_type(2)), fields.sphere_type()),
    ])
    if weights == "-":
        torch.save({name: p.detach() for name, p in probe.named_parameters()}, out)
    else:
        missing, unexpected = probe.load_state_dict(torch.load(weights), strict=False)
        assert not unexpected and not set(missing) & set(dict(probe.named_parameters())), missing
        torch.save({str(i): layer.expand_parameters()[0] for i, layer in enumerate(probe)}, out)
""")


def run_probe(cache, weights, out, env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(cache), str(weights), str(out)],
                            env=env, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_saved_weights_mean_the_same_filters_in_fresh_caches(tmp_path):
    # Only the learnable weights travel: escnn's state_dict also carries the sampled
    # bases, which would hide any difference between the caches.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    weights = tmp_path / "weights.pt"
    saver = run_probe(tmp_path / "cache_saver", "-", weights, env)
    assert saver.wait(timeout=600) == 0, saver.stderr.read()[-3000:]
    loaders = [run_probe(tmp_path / f"cache_{i}", weights, tmp_path / f"filters_{i}.pt", env)
               for i in range(2)]
    for loader in loaders:
        assert loader.wait(timeout=600) == 0, loader.stderr.read()[-3000:]
    first, second = (torch.load(tmp_path / f"filters_{i}.pt") for i in range(2))
    assert first.keys() == {"0", "1", "2"} == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
