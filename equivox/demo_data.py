"""The embedded offline demo: real PDB entries shipped by the MDAnalysisTests package.

:func:`build_demo_mirror` arranges them into a local mirror in the wwPDB divided
layout (``xy/1xyz.cif.gz`` or ``xy/1xyz.pdb.gz``) and writes a PISCES-format list made
from each file's own header (method, resolution, R-work, R-free) and residue counts.
Nothing is invented: a header that does not state a value gives ``NA``, and the
config's ``pisces.unknown`` policy decides what the filter does with it. The ~50
single-chain files under ``data/dssp`` have no header at all; their PDB id and chain
come from the file name (e.g. ``1ahsA.pdb.gz``), checked against the chain in the file.
"""
from __future__ import annotations

import gzip
import importlib.util
import re
import shutil
from pathlib import Path

from .atomic import replacing
from .atoms import read_header
from .pisces import PiscesChain, write_pisces

# (path under MDAnalysisTests/data, author chain or None for "longest chain")
DEMO_FILES = (
    ("mmcif/1YJP.cif.gz", None), ("mmcif/3KPR.cif.gz", None), ("mmcif/3PWP.cif.gz", None),
    ("mmcif/1BD2.cif.gz", None), ("mmcif/5PTI.cif.gz", None), ("mmcif/7ETN.cif.gz", None),
    ("1a28.pdb.gz", None), ("19hc.pdb.gz", None), ("1osm.pdb.gz", None), ("1hvr.pdb", None),
    ("4E43.pdb", None), ("5a7u.pdb", None), ("1grm_single.pdb", None),
)
DSSP_RE = re.compile(r"^([0-9][a-z0-9]{3})([A-Za-z0-9])\.pdb\.gz$")


def mdanalysis_data_dir() -> Path:
    """``MDAnalysisTests/data`` located without importing the package (it imports MDAnalysis)."""
    spec = importlib.util.find_spec("MDAnalysisTests")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the demo needs the MDAnalysisTests package "
                                  "(pip install -r requirements.txt)")
    return Path(spec.submodule_search_locations[0]) / "data"


def demo_sources(data_dir: Path | None = None, max_structures: int | None = None):
    """[(source file, pdb_id, chain or None)], dssp single-chain files included."""
    data_dir = data_dir or mdanalysis_data_dir()
    sources = []
    for rel, chain in DEMO_FILES:
        path = data_dir / rel
        pdb_id = Path(rel).name[:4].lower()
        sources.append((path, pdb_id, chain))
    for path in sorted((data_dir / "dssp").glob("*.pdb.gz")):
        m = DSSP_RE.match(path.name)
        if m:
            sources.append((path, m.group(1), m.group(2)))
    seen, unique = set(), []
    for src in sources:  # one entry per PDB id: the first source wins
        if src[1] not in seen:
            seen.add(src[1])
            unique.append(src)
    return unique[:max_structures] if max_structures else unique


def _mirror_name(pdb_id: str, source: Path) -> str:
    fmt = "cif" if ".cif" in source.name.lower() else "pdb"
    return f"{pdb_id[1:3]}/{pdb_id}.{fmt}.gz"


def build_demo_mirror(mirror_dir: str | Path, pisces_path: str | Path,
                      max_structures: int | None = None) -> list[PiscesChain]:
    """Copy the demo structures into ``mirror_dir`` and write the PISCES list."""
    mirror_dir = Path(mirror_dir)
    chains = []
    for source, pdb_id, chain in demo_sources(max_structures=max_structures):
        header = read_header(source)
        lengths = header["chain_lengths"]
        if chain is None:
            chain = max(sorted(lengths), key=lambda c: lengths[c])
        elif chain not in lengths:
            raise ValueError(f"{source}: chain {chain!r} from the file name is not in the file "
                             f"(chains: {sorted(lengths)})")
        target = mirror_dir / _mirror_name(pdb_id, source)
        target.parent.mkdir(parents=True, exist_ok=True)
        with replacing(target) as pending, open(source, "rb") as src, open(pending.tmp, "wb") as dst:
            if source.suffix == ".gz":
                shutil.copyfileobj(src, dst)
            else:
                with gzip.GzipFile(fileobj=dst, mode="wb", mtime=0) as gz:
                    shutil.copyfileobj(src, gz)
        chains.append(PiscesChain(
            pdb_id=pdb_id, chain=chain, length=lengths[chain], method=header["method"],
            resolution_A=header["resolution_A"], r_factor=header["r_factor"],
            r_free=header["r_free"]))
    write_pisces(pisces_path, chains)
    return chains

