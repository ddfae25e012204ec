import multiprocessing as mp
import sqlite3

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from equivox.origin_db import OriginDB, StructureRecord, assign_splits, build_origin_db


def make_db(path, sizes=(3, 1, 5, 2)):
    records = []
    for i, m in enumerate(sizes):
        origins = np.arange(m * 3, dtype=np.float32).reshape(m, 3) + 100 * i
        records.append(StructureRecord(
            chain_key=f"{i}abc_A", pdb_id=f"{i}abc", chain="A", method="XRAY",
            resolution_A=2.0, r_free=float("nan"), length=100, atoms_path="a.h5",
            n_atoms=10, n_candidates=m + 1, origins_A=origins))
    splits = assign_splits([r.pdb_id for r in records], {"train": 0.5, "val": 0.25, "test": 0.25}, 0)
    counts = build_origin_db(path, records, splits, {"origin_params": {"radius_A": 5.0}})
    return records, counts


def origins_of(db: OriginDB, row: dict) -> np.ndarray:
    """(M, 3) origins of one structure row, read one id at a time; checks they are its own."""
    ids = range(row["first_origin_id"], row["first_origin_id"] + row["n_origins"])
    assert all(db.origin(i)[0] == row["id"] for i in ids)
    return np.array([db.origin(i)[1] for i in ids]).reshape(-1, 3)


def test_every_row_reachable_none_missing(tmp_path):
    records, _ = make_db(tmp_path / "o.sqlite")
    db = OriginDB(tmp_path / "o.sqlite")
    assert db.n_origins == 11
    for row, record in zip(db.structures(), sorted(records, key=lambda r: r.chain_key)):
        np.testing.assert_allclose(origins_of(db, row), record.origins_A)  # every id, first and last
    with pytest.raises(KeyError, match="valid: 1..11"):
        db.origin(12)


def test_structures_and_origins_of(tmp_path):
    records, counts = make_db(tmp_path / "o.sqlite")
    db = OriginDB(tmp_path / "o.sqlite")
    rows = db.structures()
    assert [r["n_origins"] for r in rows] == [3, 1, 5, 2]
    np.testing.assert_allclose(origins_of(db, rows[2]), records[2].origins_A)
    assert sum(c["origins"] for c in counts.values()) == 11
    assert rows[1]["r_free"] is None                     # unknown stays unknown
    assert db.metadata()["origin_params"] == {"radius_A": 5.0}


def test_gap_in_ids_is_detected(tmp_path):
    make_db(tmp_path / "o.sqlite")
    con = sqlite3.connect(tmp_path / "o.sqlite")
    con.execute("DELETE FROM origins WHERE id = 4")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match="not 1..11"):
        OriginDB(tmp_path / "o.sqlite")


def test_splits_are_by_entry_deterministic_and_disjoint():
    ids = [f"{i}xyz" for i in range(200)] + ["1xyz"] * 3
    a = assign_splits(ids, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    b = assign_splits(list(reversed(ids)), {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1)
    assert a == b
    assert sum(v == "val" for v in a.values()) == 20
    assert assign_splits(ids, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=2) != a
    small = assign_splits(["a", "b", "c"], {"train": 0.9, "val": 0.05, "test": 0.05}, 0)
    assert sorted(small.values()) == ["test", "train", "val"]
    with pytest.raises(ValueError, match="sum to 1"):
        assign_splits(ids, {"train": 0.5, "val": 0.1, "test": 0.1}, 0)


class Origins(Dataset):
    def __init__(self, db):
        self.db = db  # opened in the parent, before the workers fork

    def __len__(self):
        return 64

    def __getitem__(self, i):
        sid, xyz = self.db.origin(i % self.db.n_origins + 1)
        return torch.tensor([i, sid, *xyz])


@pytest.mark.filterwarnings("ignore:This DataLoader will create 4 worker")
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_safe_in_several_dataloader_workers(tmp_path, context):
    make_db(tmp_path / "o.sqlite")
    db = OriginDB(tmp_path / "o.sqlite")
    expected = torch.stack([Origins(db)[i] for i in range(64)])
    loader = DataLoader(Origins(db), batch_size=5, num_workers=4,
                        multiprocessing_context=mp.get_context(context))
    got = torch.cat(list(loader))                         # 64 = 12 x 5 + 4: last batch short
    torch.testing.assert_close(got, expected)


def test_excluded_list_is_exact():
    from equivox.origin_db import excluded_chains

    listed = ["1abc_A", "1abc_A", "2xyz_B", "2xyz_B", "3pqr_C", "4lmn_D", "5efg_E"]
    reasons = [("1abc_A", "pisces", "duplicate entry in list"),      # repeat of a chain in the DB
               ("2xyz_B", "pisces", "resolution 3.1 > 2.5"),
               ("2xyz_B", "pisces", "duplicate entry in list"),
               ("4lmn_D", "pisces", "duplicate entry in list"),      # first listing failed to fetch
               ("4lmn_D", "fetch", "failed: HTTP 503"),
               ("3pqr_C", "parse", "no atoms")]
    rows = excluded_chains(listed, reasons, in_database={"1abc_A"})
    assert rows == [("2xyz_B", "pisces", "resolution 3.1 > 2.5"), ("3pqr_C", "parse", "no atoms"),
                    ("4lmn_D", "fetch", "failed: HTTP 503"),
                    ("5efg_E", "unknown", "not in any stage's output")]
