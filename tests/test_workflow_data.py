"""The data stage run by real Snakemake on real structures."""
import csv
import re
import shutil
import sqlite3

import h5py
import numpy as np
import pytest
import yaml

from equivox.atoms import load_structure
from equivox.origin_db import OriginDB
from equivox.origins import OriginParams, choose_origins
from tests.workflow_helpers import REPO, snakemake

pytestmark = pytest.mark.workflow


def tsv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    proc = snakemake(workdir, "--until", "origin_database")
    return workdir, proc


def test_demo_builds_a_consistent_origin_database(demo_run):
    workdir, proc = demo_run
    assert "origin database" in proc.stdout and "structures" in proc.stdout
    db = OriginDB(workdir / "results/origins.sqlite")
    rows = db.structures()
    assert len(rows) >= 40
    by_split = {s: {r["pdb_id"] for r in rows if r["split"] == s} for s in ("train", "val", "test")}
    assert all(by_split.values())
    assert not (by_split["train"] & by_split["val"] or by_split["train"] & by_split["test"]
                or by_split["val"] & by_split["test"])
    con = sqlite3.connect(workdir / "results/origins.sqlite")
    per_structure = dict(con.execute("SELECT structure_id, COUNT(*) FROM origins GROUP BY structure_id"))
    assert per_structure == {r["id"]: r["n_origins"] for r in rows}
    summary = {r["split"]: r for r in tsv(workdir / "results/origins.summary.tsv")}
    for split, ids in by_split.items():
        assert int(summary[split]["structures"]) == len([r for r in rows if r["split"] == split])
        assert int(summary[split]["origins"]) == sum(r["n_origins"] for r in rows if r["split"] == split)
    assert db.metadata()["origin_params"]["radius_A"] == 5.0


def test_origin_counts_equal_a_direct_recount(demo_run):
    workdir, _ = demo_run
    db = OriginDB(workdir / "results/origins.sqlite")
    params = OriginParams(**db.metadata()["origin_params"])
    for row in db.structures()[::7]:
        with h5py.File(workdir / row["atoms_path"], "r") as h5:
            atoms = load_structure(h5, row["chain_key"])
        coords, n_candidates = choose_origins(atoms, params)
        assert (len(coords), n_candidates) == (row["n_origins"], row["n_candidates"])
        np.testing.assert_allclose(db.origins_of(row["id"]), coords, atol=1e-5)


def test_dropped_chains_are_listed_with_reasons(demo_run):
    workdir, _ = demo_run
    excluded = {r["chain_key"]: r for r in tsv(workdir / "results/origins.excluded.tsv")}
    assert excluded["1grm_A"]["stage"] == "pisces" and "NMR" in excluded["1grm_A"]["reason"]
    assert "length" in excluded["7etn_A"]["reason"]


def test_rerun_has_nothing_to_do(demo_run):
    workdir, _ = demo_run
    proc = snakemake(workdir, "results/origins.sqlite", "results/origins.summary.tsv", "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_corrupt_and_missing_entries_are_listed_and_the_run_goes_on(tmp_path, mda_data):
    mirror = tmp_path / "mirror"
    (mirror / "kp").mkdir(parents=True)
    (mirror / "yj").mkdir(parents=True)
    shutil.copy(mda_data / "mmcif/3KPR.cif.gz", mirror / "kp/3kpr.cif.gz")
    shutil.copy(mda_data / "mmcif/1YJP_invalid.cif.gz", mirror / "yj/2yjp.cif.gz")
    shutil.copy(mda_data / "1a28.pdb.gz", mirror / "1a28.pdb.gz")  # flat layout
    (tmp_path / "list.txt").write_text(
        "IDs         length  Exptl.  resolution  R-factor  FreeRvalue\n"
        "3KPRA          276    XRAY       2.600      0.22        0.28\n"
        "3KPRD          201    XRAY       2.600      0.22        0.28\n"
        "2YJPA           50    XRAY       1.800      0.18        0.19\n"
        "1A28B          249    XRAY       1.800      0.19        0.23\n"
        "9ZZZA          100    XRAY       2.000      0.20        0.25\n")
    config = {"pisces": {"source": "file", "path": str(tmp_path / "list.txt")},
              "structures": {"source": "mirror", "mirror_dir": str(mirror), "n_shards": 2},
              "splits": {"train": 0.34, "val": 0.33, "test": 0.33, "seed": 0}}
    snakemake(tmp_path, "--until", "origin_database", config=config)
    excluded = {r["chain_key"]: r for r in tsv(tmp_path / "results/origins.excluded.tsv")}
    assert excluded["2yjp_A"]["stage"] == "parse" and "not chemical elements" in excluded["2yjp_A"]["reason"]
    assert excluded["9zzz_A"]["stage"] == "fetch" and "missing" in excluded["9zzz_A"]["reason"]
    kept = {r["chain_key"] for r in OriginDB(tmp_path / "results/origins.sqlite").structures()}
    assert kept == {"3kpr_A", "3kpr_D", "1a28_B"}
    # both chains of one entry share a split
    splits = {r["chain_key"]: r["split"] for r in OriginDB(tmp_path / "results/origins.sqlite").structures()}
    assert splits["3kpr_A"] == splits["3kpr_D"]


@pytest.mark.parametrize("config, words", [
    ({"origins": {"radius": 5}}, "config origins.radius: unknown key"),
    ({"structures": {"n_shards": "two"}}, "config structures.n_shards: 'two' is not of type"),
    ({"pisces": {"unknown": "maybe"}}, "config pisces.unknown: 'maybe' is not one of"),
    ({"splits": {"val": 1.5}}, "config splits.val: 1.5 is greater"),
    ({"splits": {"val": 0.5}}, "config splits: train + val + test must be 1"),
])
def test_config_error_names_the_key(tmp_path, config, words):
    proc = snakemake(tmp_path, "-n", config=config, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert words in out


def test_full_study_config_plans_every_stage(tmp_path):
    """The full-study config validates and its whole DAG builds (a dry run: no download)."""
    proc = snakemake(tmp_path, "all", "-n", "--configfile", str(REPO / "config/full_study.yaml"))
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    n_archs = len(yaml.safe_load((REPO / "config/architectures/full.yaml").read_text()))
    assert jobs["fetch_structures"] == "64" and jobs["train_model"] == str(n_archs), proc.stdout[-3000:]
    assert jobs["download_pisces"] == "1"
