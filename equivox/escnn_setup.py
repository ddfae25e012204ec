"""Import escnn with its on-disk cache redirected to a writable project directory.

escnn memoises group/representation computations with joblib in a folder *inside
site-packages*, fixed when ``escnn.group`` is imported. That folder is read-only on
shared clusters and silently shared between unrelated projects. :func:`import_escnn`
points every escnn joblib store at ``cache_dir`` instead. Always import escnn through
this module (``from equivox.escnn_setup import import_escnn; escnn = import_escnn()``).

The Clebsch-Gordan coefficients come from the ``py3nj`` distribution in
third_party/py3nj (exact Racah formula), so the cache content is identical on every
machine; see docs/install.md.
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

ENV_VAR = "EQUIVOX_ESCNN_CACHE"


def default_cache_dir() -> Path:
    """``$EQUIVOX_ESCNN_CACHE``, else ``$XDG_CACHE_HOME/equivox/escnn`` (``~/.cache``)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "equivox" / "escnn"


def import_escnn(cache_dir: str | os.PathLike | None = None):
    """Import escnn (once per process) with its joblib caches under ``cache_dir``.

    Returns the ``escnn`` module. Calling again with another directory moves the
    caches again; the last call wins.
    """
    import joblib

    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # torch/escnn deprecation chatter at import; real problems still raise
        warnings.simplefilter("ignore", category=UserWarning)
        import escnn
        import escnn.gspaces  # noqa: F401  (imports every cache-owning module)
        import escnn.nn  # noqa: F401

    relocated = 0
    for name, module in list(sys.modules.items()):
        if not name.startswith("escnn") or module is None:
            continue
        memory = getattr(module, "cache", None)
        if isinstance(memory, joblib.Memory) and memory.store_backend is not None:
            # all functions decorated by this Memory share this backend object
            memory.store_backend.location = str(target / "joblib")
            memory.location = str(target)
            relocated += 1
    if relocated == 0:
        raise RuntimeError("escnn_setup: found no escnn joblib cache to relocate; "
                           "the escnn version changed, update equivox/escnn_setup.py")
    escnn.group.__cache_path__ = str(target)
    return escnn
