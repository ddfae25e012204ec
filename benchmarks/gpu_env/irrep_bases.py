"""Stand-in for lie_learn's compiled ``irrep_bases`` on the GPU benchmark machine only.

That machine runs Python 3.12 with numpy 2, where lie_learn's cp311 Cython extension
cannot load. escnn asks lie_learn only for *real* Wigner D matrices, which never reach
the change of basis, so this module only has to exist. It is copied over lie_learn on
that machine by benchmarks/run_gpu.sh; the project's own install never uses it.
"""


def change_of_basis_matrix(*args, **kwargs):
    raise NotImplementedError("lie_learn change_of_basis_matrix is not available in the "
                              "GPU benchmark environment (escnn never calls it for real fields)")
