import math

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
    ("1ABCA ten XRAY 2.0 0.2 0.3", "'length'"),
    ("ABC 100 XRAY 2.0 0.2 0.3", "'IDs'"),
    ("1ABCA 100 XRAY high 0.2 0.3", "'resolution'"),
])
def test_malformed_line_names_file_and_line(tmp_path, bad_line, words):
    path = write(tmp_path, REAL_LIST + bad_line + "\n")
    with pytest.raises(PiscesFormatError) as err:
        parse_pisces(path)
    assert f"{path}:7:" in str(err.value) and words in str(err.value)


def test_missing_header_is_an_error(tmp_path):
    with pytest.raises(PiscesFormatError, match="header"):
        parse_pisces(write(tmp_path, REAL_LIST.split("\n", 1)[1]))


def test_filter_records_reasons_and_unknown_policy(tmp_path):
    chains = parse_pisces(write(tmp_path, REAL_LIST))
    kept, dropped = filter_chains(chains, PiscesFilter(max_resolution_A=2.0, max_r_free=0.3,
                                                       min_length=40, methods=("XRAY",)))
    assert [c.chain_key for c in kept] == ["1a0b_AAA"]
    reasons = {c.chain_key: r for c, r in dropped}
    assert reasons["12as_A"] == "resolution 2.2 > 2"
    assert reasons["5xyz_b"].startswith("method NMR")
    assert reasons["7abc_D"].startswith("length 20")
    unknown = [c for c in chains if c.pdb_id == "5xyz"]
    relaxed = dict(max_resolution_A=9, methods=("NMR",), min_length=1)
    assert filter_chains(unknown, PiscesFilter(**relaxed, unknown="keep"))[0] == unknown
    assert filter_chains(unknown, PiscesFilter(**relaxed, unknown="drop"))[1][0][1] == "resolution unknown"


def test_tables_and_list_round_trip(tmp_path):
    chains = parse_pisces(write(tmp_path, REAL_LIST))
    write_chain_table(tmp_path / "t.tsv", chains)
    again = read_chain_table(tmp_path / "t.tsv")
    assert [c.chain_key for c in again] == [c.chain_key for c in chains]
    write_pisces(tmp_path / "l.txt", chains)
    assert [c.chain_key for c in parse_pisces(tmp_path / "l.txt")] == [c.chain_key for c in chains]
