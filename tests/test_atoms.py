import gzip
import shutil

import h5py
import numpy as np
import pytest

from equivox.atoms import (StructureParseError, load_structure, nonbiological_residues,
                           read_header, read_structure, write_structure)


def test_mmcif_keeps_author_and_label_chains_and_altlocs(mda_data):
    table = read_structure(mda_data / "mmcif/5PTI.cif.gz")
    assert {"A"} == set(table.auth_chain)           # author chain of everything
    assert len(set(table.label_chain)) > 1          # label ids differ (waters, ions)
    assert {"A", "B"} <= set(table.altloc)          # both conformers kept
    alt = table.altloc != ""
    # occupancies of the conformers of a disordered atom sum to ~1
    assert 0 < table.occupancy[alt].min() < 1
    assert table.coords_A.shape == (len(table), 3)


def test_pdb_format_and_header_metadata(mda_data):
    meta = read_header(mda_data / "1a28.pdb.gz")
    assert meta["method"] == "XRAY" and meta["resolution_A"] == 1.8 and meta["r_free"] == 0.227
    assert meta["chain_lengths"] == {"A": 251, "B": 249}
    headerless = read_header(mda_data / "dssp/1ahsA.pdb.gz")
    assert headerless["method"] == "NA" and np.isnan(headerless["resolution_A"])


def test_store_flags_waters_and_pisces_chain(mda_data, tmp_path):
    table = read_structure(mda_data / "mmcif/3KPR.cif.gz")
    blocklist = nonbiological_residues()
    with h5py.File(tmp_path / "a.h5", "w") as h5:
        n = write_structure(h5, "3kpr_B", "3kpr", "B", table, "x.cif.gz", blocklist)
        atoms = load_structure(h5, "3kpr_B")
    assert n == int(np.sum(table.auth_chain == "B"))
    assert atoms["is_pisces_chain"].sum() == n
    water = atoms["residue_name"] == b"HOH"
    assert water.any() and atoms["is_nonbiological"][water].all()
    assert not atoms["is_nonbiological"][atoms["residue_name"] == b"ALA"].any()


def test_multi_letter_author_chain_is_matched_exactly(mda_data, tmp_path):
    table = read_structure(mda_data / "mmcif/1YJP.cif.gz")
    table.auth_chain = np.where(table.auth_chain == "A", "AAA", table.auth_chain)
    with h5py.File(tmp_path / "a.h5", "w") as h5:
        assert write_structure(h5, "1yjp_AAA", "1yjp", "AAA", table, "x.cif", frozenset()) == len(table)
        with pytest.raises(StructureParseError, match="author chain 'A' not found"):
            write_structure(h5, "1yjp_A", "1yjp", "A", table, "x.cif", frozenset())


def test_corrupt_and_truncated_files_raise_naming_the_file(mda_data, tmp_path):
    with pytest.raises(StructureParseError, match=r"1YJP_invalid.*\['X'\] are not chemical"):
        read_structure(mda_data / "mmcif/1YJP_invalid.cif.gz")
    data = (mda_data / "mmcif/1YJP.cif.gz").read_bytes()
    cut = tmp_path / "1yjp.cif.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(StructureParseError, match=str(cut)):
        read_structure(cut)
    plain = tmp_path / "1abc.cif"
    with gzip.open(mda_data / "mmcif/1YJP.cif.gz") as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert len(read_structure(plain)) == len(read_structure(mda_data / "mmcif/1YJP.cif.gz"))
