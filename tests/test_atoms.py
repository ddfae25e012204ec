import gzip
import re
import shutil
from pathlib import Path

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


# --- every atom of every entry (real files, minimally edited where a case is rare) ---

FIXTURES = Path(__file__).parent / "data" / "structures"


def split_atom_site(text: str):
    """(lines before the rows, column names, rows as token lists, lines after) of the
    _atom_site loop of an mmCIF text whose rows hold no quoted spaces."""
    lines = text.splitlines()
    names = [i for i, line in enumerate(lines) if line.startswith("_atom_site.")]
    start = names[-1] + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith(("#", "_", "loop_"))),
               len(lines))
    columns = [lines[i].strip().split(".", 1)[1] for i in names]
    return lines[:names[0]], columns, [line.split() for line in lines[start:end]], lines[end:]


def join_atom_site(before, columns, rows, after) -> str:
    header = before + [f"_atom_site.{c}" for c in columns]
    return "\n".join(header + [" ".join(r) for r in rows] + after) + "\n"


def without_column(text: str, column: str) -> str:
    before, columns, rows, after = split_atom_site(text)
    k = columns.index(column)
    return join_atom_site(before, columns[:k] + columns[k + 1:], [r[:k] + r[k + 1:] for r in rows], after)


@pytest.mark.parametrize("suffix", ["cif", "pdb"])
def test_microheterogeneity_keeps_every_residue_variant(suffix):
    """1YJP (real) with residue A 3 deposited as ASN (alt A, 0.60) and SER (alt B, 0.40),
    as 1EJG has PRO/SER at 22: both formats keep all 72 atoms, both variants."""
    table = read_structure(FIXTURES / f"1yjp_microheterogeneity.{suffix}")
    assert len(table) == 72 and table.model_policy == "single" and table.warnings == ()
    at3 = {(r, a) for r, a in zip(table.residue_name.tolist(), table.altloc.tolist())
           if (r, a) in {("ASN", "A"), ("SER", "B")}}
    assert at3 == {("ASN", "A"), ("SER", "B")}
    ser = table.residue_name == "SER"
    assert ser.sum() == 6 and np.allclose(table.occupancy[ser], 0.4)
    assert sorted(table.atom_name[ser].tolist()) == ["C", "CA", "CB", "N", "O", "OG"]


def test_model_less_multi_model_mmcif_is_not_merged(mda_data, tmp_path):
    """A real 2-model mmCIF (no method stated) with its model-number column removed."""
    text = gzip.decompress((mda_data / "mmcif/multimodel_warning.cif.gz").read_bytes()).decode()
    numbered = read_structure(mda_data / "mmcif/multimodel_warning.cif.gz")
    path = tmp_path / "2mdl.cif"
    path.write_text(without_column(text, "pdbx_PDB_model_num"))

    table = read_structure(path)

    _, _, rows, _ = split_atom_site(text)
    n_model_1 = sum(r[-1] == "1" for r in rows)
    assert 0 < n_model_1 < len(rows)
    assert len(table) == len(numbered) == n_model_1
    assert (table.n_models, table.model_policy) == (2, "first")
    assert any("first atom recurring" in w for w in table.warnings)
    np.testing.assert_array_equal(table.coords_A, numbered.coords_A)


def conformer_models(mda_data, occupancies, model_column=True) -> str:
    """1YJP (X-ray) redeposited as 2G10 deposits its conformers: model 1 = the chain at
    occupancy occupancies[0], model 2 = the same chain 0.3 A away at occupancies[1]."""
    before, columns, rows, after = split_atom_site((mda_data / "mmcif/1YJP.cif").read_text())
    x, occ, model = (columns.index(c) for c in ("Cartn_x", "occupancy", "pdbx_PDB_model_num"))
    protein = [r for r in rows if r[0] == "ATOM"]
    first = [r[:occ] + [f"{occupancies[0]:.2f}"] + r[occ + 1:] for r in protein]
    second = [r[:x] + [f"{float(r[x]) + 0.3:.3f}"] + r[x + 1:occ] + [f"{occupancies[1]:.2f}"]
              + r[occ + 1:model] + ["2"] + r[model + 1:] for r in protein]
    text = join_atom_site(before, columns, first + [r for r in rows if r[0] != "ATOM"] + second, after)
    return text if model_column else without_column(text, "pdbx_PDB_model_num")


@pytest.mark.parametrize("model_column", [True, False], ids=["numbered", "model-less"])
def test_xray_conformers_deposited_as_models_are_merged(mda_data, tmp_path, model_column):
    path = tmp_path / "conf.cif"
    path.write_text(conformer_models(mda_data, (0.77, 0.23), model_column))

    table = read_structure(path)

    assert (table.n_models, table.model_policy) == (2, "merged")
    assert len(table) == 66 + 59                      # both conformers of the 59 protein atoms
    protein = table.residue_name != "HOH"
    assert sorted(set(table.altloc[protein].tolist())) == ["1", "2"]
    assert np.allclose(np.bincount((table.altloc[protein] == "2").astype(int),
                                   weights=table.occupancy[protein]), [59 * 0.77, 59 * 0.23])


def test_xray_models_that_are_not_conformers_keep_the_first(mda_data, tmp_path):
    path = tmp_path / "conf.cif"
    path.write_text(conformer_models(mda_data, (1.0, 1.0)))
    table = read_structure(path)
    assert (table.n_models, table.model_policy, len(table)) == (2, "first", 66)
    assert any("sum to 2.00 > 1" in w for w in table.warnings)


@pytest.mark.parametrize("column, words", [
    ("auth_asym_id", "no auth_asym_id column (author chain ids"),
    ("type_symbol", "no type_symbol column (element symbols)"),
    ("Cartn_y", "no Cartn_y column"),
])
def test_missing_required_column_is_named(mda_data, tmp_path, column, words):
    path = tmp_path / "1yjp.cif"
    path.write_text(without_column((mda_data / "mmcif/1YJP.cif").read_text(), column))
    with pytest.raises(StructureParseError, match=re.escape(words)) as err:
        read_structure(path)
    assert str(path) in str(err.value)


def test_suspicious_defaults_are_warnings_in_the_parse_record(mda_data, tmp_path):
    text = (mda_data / "mmcif/1YJP.cif").read_text()
    no_occupancy = tmp_path / "occ.cif"
    no_occupancy.write_text(without_column(text, "occupancy"))
    before, columns, rows, after = split_atom_site(text)
    chain = columns.index("auth_asym_id")
    no_chain = tmp_path / "chain.cif"
    no_chain.write_text(join_atom_site(before, columns, [r[:chain] + ["."] + r[chain + 1:] if r[0] == "HETATM"
                                                         else r for r in rows], after))

    occ_table, chain_table = read_structure(no_occupancy), read_structure(no_chain)

    assert occ_table.warnings == ("no occupancy column: occupancy 1 assumed for every atom",)
    assert np.all(occ_table.occupancy == 1)
    assert chain_table.warnings == ("7 atom(s) with no author chain id ('.' or '?')",)
    with h5py.File(tmp_path / "a.h5", "w") as h5:
        write_structure(h5, "1yjp_A", "1yjp", "A", occ_table, no_occupancy, frozenset())
        assert "no occupancy column" in h5["structures/1yjp_A"].attrs["warnings"]
        assert h5["structures/1yjp_A"].attrs["model_policy"] == "single"


def test_pdb_reader_matches_biopython_on_real_files(mda_data):
    """The PDB-format reader against Biopython's PDBParser (every atom of model 1)."""
    import warnings

    from Bio.PDB import PDBParser

    for rel in ("1a28.pdb.gz", "4E43.pdb", "dssp/3nbkA.pdb.gz", "1hvr.pdb"):
        path = mda_data / rel
        with gzip.open(path, "rt") if path.suffix == ".gz" else open(path) as handle, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = next(iter(PDBParser(QUIET=True).get_structure(rel, handle)))
        theirs = sorted((a.element, a.get_name(), r.get_resname(), c.id, a.altloc.strip(),
                         *np.round(a.coord, 3).tolist()) for c in model for r in c
                        for a in r.get_unpacked_list())
        table = read_structure(path)
        ours = sorted(zip(table.element.tolist(), table.atom_name.tolist(), table.residue_name.tolist(),
                          table.auth_chain.tolist(), table.altloc.tolist(),
                          *np.round(table.coords_A.astype(np.float32), 3).T.tolist()))
        assert ours == theirs, rel
