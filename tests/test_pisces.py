import math
from pathlib import Path

import pytest

from equivox.pisces import (PiscesFilter, PiscesFormatError, filter_chains, parse_pisces,
                            read_chain_table, write_chain_table, write_pisces)

REAL_LIST = """\
IDs         length  Exptl.  resolution  R-factor  FreeRvalue
12ASA          330    XRAY       2.200      0.16        0.29
1A0BAAA        117    XRAY       1.700      0.19        0.23
5XYZb           80     NMR          NA        NA          NA
6ABCAB         500      EM       3.100        NA          NA
7ABCD           20    XRAY       1.100      0.11        0.12
"""


def write(tmp_path, text):
    path = tmp_path / "cullpdb.txt"
    path.write_text(text)
    return path


def test_parses_real_format_with_multi_character_chains(tmp_path):
    chains = parse_pisces(write(tmp_path, REAL_LIST))
    assert [(c.pdb_id, c.chain) for c in chains] == [
        ("12as", "A"), ("1a0b", "AAA"), ("5xyz", "b"), ("6abc", "AB"), ("7abc", "D")]
    assert chains[1].chain_key == "1a0b_AAA"
    assert chains[0].resolution_A == 2.2 and chains[0].r_free == 0.29
    assert math.isnan(chains[2].resolution_A)


@pytest.mark.parametrize("bad_line, words", [
    ("1ABCA 100 XRAY 2.0 0.2", "expected 6 columns"),
    ("1ABCA ten XRAY 2.0 0.2 0.3", "length column"),
    ("ABC 100 XRAY 2.0 0.2 0.3", "id column"),
    ("1ABCA 100 XRAY high 0.2 0.3", "'resolution'"),
])
def test_malformed_line_names_file_and_line(tmp_path, bad_line, words):
    path = write(tmp_path, REAL_LIST + bad_line + "\n")
    with pytest.raises(PiscesFormatError) as err:
        parse_pisces(path)
    assert f"{path}:7:" in str(err.value) and words in str(err.value)


def test_missing_header_is_an_error(tmp_path):
    with pytest.raises(PiscesFormatError, match="header") as err:
        parse_pisces(write(tmp_path, REAL_LIST.split("\n", 1)[1]))
    assert "PDBchain len method resol rfac freerfac" in str(err.value)
    assert "\n" not in str(err.value)


FIXTURES = Path(__file__).parent / "data" / "pisces"
FULL_STUDY = dict(max_resolution_A=2.5, max_r_free=0.3, min_length=40, max_length=10000, methods=("XRAY",))


def test_current_format_with_multi_character_chains_kept_and_dropped():
    chains = parse_pisces(FIXTURES / "cullpdb_current_format.txt")
    assert len(chains) == 12
    assert ("7af2", "AAA") in {(c.pdb_id, c.chain) for c in chains}
    assert {c.chain_key for c in chains} >= {"6zm5_BB", "5r81_a"}
    assert chains[0].r_factor == 0.072 and chains[0].r_free == 0.078 and chains[0].length == 80

    kept, dropped = filter_chains(chains, PiscesFilter(**FULL_STUDY, unknown="drop"))

    assert [c.chain_key for c in kept] == ["5d8v_A", "3nir_A", "7af2_AAA", "6zm5_BB", "3x2m_A"]
    reasons = {c.chain_key: r for c, r in dropped}
    assert reasons == {"4y9w_A": "resolution 2.8 > 2.5", "2mxu_A": "method NMR not in ['XRAY']",
                       "7k00_A": "method EM not in ['XRAY']", "1ejg_A": "R-free unknown",
                       "8f2n_C": "length 35 outside [40, 10000]",
                       "6zm5_BB": "duplicate entry in list", "5r81_a": "R-free 0.311 > 0.3"}
    kept_if_unknown_kept = filter_chains(chains, PiscesFilter(**FULL_STUDY, unknown="keep"))[0]
    assert len(kept_if_unknown_kept) == 6


def test_old_format_r_free_one_means_not_stated():
    chains = {c.chain_key: c for c in parse_pisces(FIXTURES / "cullpdb_2019_format.txt")}
    assert len(chains) == 6 and chains["1a0b_AAA"].r_free == 0.23
    assert math.isnan(chains["1gci_A"].r_free) and chains["1gci_A"].r_factor == 0.09

    kept, dropped = filter_chains(chains.values(), PiscesFilter(**FULL_STUDY, unknown="keep"))

    assert [c.chain_key for c in kept] == ["5d8v_A", "1a0b_AAA", "1gci_A"]
    assert dict((c.chain_key, r) for c, r in dropped)["1etl_A"].startswith("length 12")
    dropped_too = filter_chains(chains.values(), PiscesFilter(**FULL_STUDY, unknown="drop"))[1]
    assert ("1gci_A", "R-free unknown") in {(c.chain_key, r) for c, r in dropped_too}


def test_columns_in_another_order_and_extra_columns(tmp_path):
    path = write(tmp_path, "method  PDBchain  freerfac  resol  len  rfac  note\n"
                           "XRAY    7AF2AAA   0.230     1.70   117  0.190 x\n")
    (chain,) = parse_pisces(path)
    assert (chain.chain_key, chain.length, chain.resolution_A, chain.r_free) == ("7af2_AAA", 117, 1.7, 0.23)


def test_header_lacking_a_column_names_it(tmp_path):
    with pytest.raises(PiscesFormatError, match=r"cullpdb.txt:2: header lacks the column\(s\) for r_free"):
        parse_pisces(write(tmp_path, "# list\nPDBchain len method resol rfac\n5D8VA 80 XRAY 0.48 0.07\n"))


def test_filter_records_reasons_and_unknown_policy(tmp_path):
    chains = parse_pisces(write(tmp_path, REAL_LIST))
    kept, dropped = filter_chains(chains, PiscesFilter(max_resolution_A=2.0, max_r_free=0.3, min_length=40,
                                                       max_length=10000, methods=("XRAY",), unknown="keep"))
    assert [c.chain_key for c in kept] == ["1a0b_AAA"]
    reasons = {c.chain_key: r for c, r in dropped}
    assert reasons["12as_A"] == "resolution 2.2 > 2"
    assert reasons["5xyz_b"].startswith("method NMR")
    assert reasons["7abc_D"].startswith("length 20")
    unknown = [c for c in chains if c.pdb_id == "5xyz"]
    relaxed = dict(max_resolution_A=9, max_r_free=0.3, methods=("NMR",), min_length=1, max_length=10000)
    assert filter_chains(unknown, PiscesFilter(**relaxed, unknown="keep"))[0] == unknown
    assert filter_chains(unknown, PiscesFilter(**relaxed, unknown="drop"))[1][0][1] == "resolution unknown"


def test_tables_and_list_round_trip(tmp_path):
    chains = parse_pisces(write(tmp_path, REAL_LIST))
    write_chain_table(tmp_path / "t.tsv", chains)
    again = read_chain_table(tmp_path / "t.tsv")
    assert [c.chain_key for c in again] == [c.chain_key for c in chains]
    write_pisces(tmp_path / "l.txt", chains)
    assert [c.chain_key for c in parse_pisces(tmp_path / "l.txt")] == [c.chain_key for c in chains]
