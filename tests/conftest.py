import os
from pathlib import Path

import pytest

from equivox.demo import mdanalysis_data_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mda_data() -> Path:
    """Real structures shipped by MDAnalysisTests."""
    return mdanalysis_data_dir()


@pytest.fixture(scope="session", autouse=True)
def escnn_cache(tmp_path_factory):
    """One escnn cache per test session, never inside site-packages."""
    path = tmp_path_factory.mktemp("escnn_cache")
    os.environ.setdefault("EQUIVOX_ESCNN_CACHE", str(path))
    return Path(os.environ["EQUIVOX_ESCNN_CACHE"])
