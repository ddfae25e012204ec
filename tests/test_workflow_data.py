"""The data stage run by real Snakemake on real structures."""
import csv
import gzip
import importlib.util
import re
import shutil
import sqlite3
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from equivox.atoms import load_structure
from equivox.origin_db import OriginDB
from equivox.origins import OriginParams, choose_origins
from tests.test_origin_db import origins_of
from tests.workflow_helpers import REPO, snakemake

pytestmark = pytest.mark.workflow
MMCIF = Path(importlib.util.find_spec("MDAnalysisTests").submodule_search_locations[0]) / "data" / "mmcif"


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
        np.testing.assert_allclose(origins_of(db, row), coords, atol=1e-5)


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


def test_a_bad_compare_pair_stops_the_tables_not_a_single_run(tmp_path):
    """analysis.compare naming no configured group fails the DAG of `all` (before any job)
    with the key and the name; a target that needs no table still plans."""
    config = {"analysis": {"compare": [["plain_resnet_alpha_tiny", "no_such_model"]]}}
    proc = snakemake(tmp_path, "all", "-n", config=config, check=False)
    assert proc.returncode != 0
    assert "config analysis.compare: 'no_such_model'" in proc.stdout + proc.stderr
    arch = next(iter(yaml.safe_load((REPO / "config/architectures/demo.yaml").read_text())))
    snakemake(tmp_path, f"results/runs/{arch}/final/run.json", "-n", config=config)


def test_full_study_config_plans_every_stage(tmp_path):
    """The full-study config validates and its whole DAG builds (a dry run: no download)."""
    proc = snakemake(tmp_path, "all", "-n", "--configfile", str(REPO / "config/full_study.yaml"))
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    n_archs = len(yaml.safe_load((REPO / "config/architectures/full.yaml").read_text()))
    assert jobs["download_structures"] == "64" and jobs["train_model"] == str(n_archs), proc.stdout[-3000:]
    assert jobs["download_pisces"] == "1"


def test_pisces_format_error_is_one_line_without_traceback(tmp_path):
    (tmp_path / "list.txt").write_text("PDBchain len method resol rfac freerfac\n"
                                       "5D8VA 80 XRAY 0.48 0.072 0.078\n7AF 117 XRAY 1.7 0.19 0.23\n")
    config = {"pisces": {"source": "file", "path": str(tmp_path / "list.txt")}}
    proc = snakemake(tmp_path, "results/pisces/kept.tsv", config=config, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"{tmp_path / 'list.txt'}:3: the id column should hold a 4-character PDB code" in out
    assert "Traceback" not in out and "PiscesFormatError" not in out


def test_download_faults_are_summarised_fail_the_shard_and_are_retried(tmp_path, monkeypatch):
    """PISCES list and entries from a real HTTP server on 127.0.0.1: an entry that always
    answers 503 and one whose uncompressed body is cut without a Content-Length."""
    from tests.http_server import Cut, local_server

    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    text = {i: gzip.decompress((MMCIF / f"{i}.cif.gz").read_bytes()) for i in ("1YJP", "3PWP", "5PTI", "7ETN")}
    pisces = (b"PDBchain len method resol rfac freerfac\n1YJPA 7 XRAY 1.80 0.18 0.19\n"
              b"3PWPA 275 XRAY 2.69 0.21 0.26\n5PTIA 58 XRAY 1.00 0.20 NA\n7ETNA 4 XRAY 0.82 0.08 0.09\n")
    with local_server() as server:
        server.routes.update({f"/{i}.cif": [body] for i, body in text.items()})
        server.routes["/5PTI.cif"] = [503]                                   # shard 000 with 1YJP
        server.routes["/7ETN.cif"] = [Cut(text["7ETN"][: len(text["7ETN"]) * 9 // 10], False)]  # 001
        server.routes["/cullpdb"] = [pisces]
        config = {"pisces": {"source": "url", "url": server.base_url + "/cullpdb", "min_length": 1},
                  "structures": {"source": "rcsb", "url_template": server.base_url + "/{pdb_id}.cif",
                                 "n_shards": 2, "retries": 0, "backoff_s": 0, "timeout_s": 5}}

        # 1: each shard lost 1 of 2 entries, over the default limit of 5%: the run fails
        failed = snakemake(tmp_path, "results/origins.sqlite", config=config, check=False)
        out = failed.stdout + failed.stderr
        assert failed.returncode != 0
        assert "more than config structures.max_failed_fraction = 0.05" in out and "Traceback" not in out
        assert "over structures.max_failed_fraction" in out and ".tsv.rejected" in out

        # 2: the limit raised, a plain rerun retries the failed shards; summary and command
        config["structures"]["max_failed_fraction"] = 0.5
        allowed = snakemake(tmp_path, "results/origins.sqlite", config=config)
        assert "8 entries" not in allowed.stdout
        assert "2 FAILED (reasons in the manifests)" in allowed.stdout, allowed.stdout[-3000:]
        manifests = {r["pdb_id"]: r for path in sorted((tmp_path / "results/structures/manifests").glob("*.tsv"))
                     for r in tsv(path)}
        assert manifests["5pti"]["status"] == "failed" and "HTTP 503" in manifests["5pti"]["reason"]
        assert "incomplete mmCIF text: last line" in manifests["7etn"]["reason"]
        excluded = {r["chain_key"]: r["stage"] for r in tsv(tmp_path / "results/origins.excluded.tsv")}
        assert excluded["5pti_A"] == excluded["7etn_A"] == "fetch"
        command = re.search(r"--forcerun (.+)$", allowed.stdout, re.M).group(1).split()
        assert command == ["results/structures/manifests/000.tsv", "results/structures/manifests/001.tsv"]

        # 3: the server healed, the printed command fetches exactly the failed entries
        server.routes["/5PTI.cif"], server.routes["/7ETN.cif"] = [text["5PTI"]], [text["7ETN"]]
        hits_before = dict(server.hits)
        snakemake(tmp_path, "results/origins.sqlite", "--forcerun", *command, config=config)
        fetched = {path: n - hits_before.get(path, 0) for path, n in server.hits.items()}
        assert {p: n for p, n in fetched.items() if n} == {"/5PTI.cif": 1, "/7ETN.cif": 1}
        in_db = {r["chain_key"] for r in OriginDB(tmp_path / "results/origins.sqlite").structures()}
        excluded = {r["chain_key"]: r["stage"] for r in tsv(tmp_path / "results/origins.excluded.tsv")}
        assert "5pti_A" in in_db and "fetch" not in excluded.values()
        assert not in_db & set(excluded)

        # 4 (issue 11): operational keys are not params: changing them reruns nothing
        tuned = {**config, "structures": {**config["structures"], "retries": 7, "backoff_s": 3,
                                          "timeout_s": 30, "max_failed_fraction": 0.2}}
        proc = snakemake(tmp_path, "results/origins.sqlite", "-n", config=tuned)
        assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-2000:]
        moved = {**config, "pisces": {**config["pisces"], "url": server.base_url + "/cullpdb?v=2"}}
        proc = snakemake(tmp_path, "results/origins.sqlite", "-n", config=moved)
        assert re.search(r"^download_pisces\s+1$", proc.stdout, re.M), proc.stdout[-2000:]
