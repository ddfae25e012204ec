"""equivox.download against a real HTTP server on 127.0.0.1 and real PDB/mmCIF files.

The structure files come from the MDAnalysisTests package. Nothing here leaves the
machine: the server binds 127.0.0.1 and proxies are bypassed.
"""
import csv
import gzip
import importlib.util
import logging
import runpy
import socket
import time
from pathlib import Path

import pytest

from equivox import download
from equivox.shard_ids import shard_ids
from tests.http_server import Cut, ShortRead, local_server
from equivox.download import (
    MANIFEST_COLUMNS,
    DownloadError,
    ShardFailedError,
    check_failed_fraction,
    fetch_summary,
    FetchResult,
    FetchSettings,
    download_file,
    fetch_entry,
    fetch_shard,
    validate_structure_file,
)

DATA = Path(importlib.util.find_spec("MDAnalysisTests").submodule_search_locations[0]) / "data"
MMCIF = DATA / "mmcif"
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "download_structures.py"

CIF_1YJP = (MMCIF / "1YJP.cif.gz").read_bytes()
TRUNCATED_1YJP = CIF_1YJP[: len(CIF_1YJP) // 2]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # A proxy from the environment would send 127.0.0.1 requests off the machine.
    for scheme in ("http", "https", "all"):
        monkeypatch.delenv(f"{scheme}_proxy", raising=False)
        monkeypatch.delenv(f"{scheme.upper()}_PROXY", raising=False)
    monkeypatch.setenv("no_proxy", "*")


@pytest.fixture
def server():
    with local_server() as state:
        yield state


FAST = {"url_template": None, "mirror_dir": None, "retries": 2, "backoff_s": 0.01, "timeout_s": 5.0}


def http_settings(url_template: str, **overrides) -> FetchSettings:
    return FetchSettings(**{**FAST, "url_template": url_template, **overrides})


def mirror_settings(mirror_dir: Path) -> FetchSettings:
    return FetchSettings(**{**FAST, "mirror_dir": mirror_dir})


def files_in(folder: Path) -> list[str]:
    """Every name in ``folder``, hidden temporary files included."""
    return sorted(p.name for p in folder.iterdir())


def decompressed(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


# --- fetch_entry over HTTP ----------------------------------------------------------


def test_download_stores_the_served_file(server, tmp_path):
    server.routes["/1YJP.cif.gz"] = [CIF_1YJP]

    result = fetch_entry("1yjp", tmp_path, http_settings(server.url_template))

    stored = tmp_path / "1yjp.cif.gz"
    assert result == FetchResult("1yjp", "ok", stored, "", 1, len(CIF_1YJP))
    assert stored.read_bytes() == CIF_1YJP
    assert files_in(tmp_path) == ["1yjp.cif.gz"]
    assert server.hits == {"/1YJP.cif.gz": 1}


def test_template_fields_and_uncompressed_reply_is_gzipped(server, tmp_path):
    text = (MMCIF / "1YJP.cif").read_bytes()
    server.routes["/yj/1yjp.cif"] = [text]

    settings = http_settings(server.base_url + "/{middle}/{pdb_id_lower}.cif")
    result = fetch_entry("1YJP", tmp_path, settings)

    assert result.status == "ok"
    assert decompressed(result.path) == text


@pytest.mark.parametrize("code", [404, 410])
def test_gone_is_obsolete_and_not_retried(server, tmp_path, code):
    server.routes["/1ABC.cif.gz"] = [code]

    result = fetch_entry("1ABC", tmp_path, http_settings(server.url_template))

    assert (result.status, result.path, result.attempts) == ("obsolete", None, 1)
    assert str(code) in result.reason
    assert server.hits["/1ABC.cif.gz"] == 1
    assert files_in(tmp_path) == []


@pytest.mark.parametrize(
    "first_reply",
    [500, 503, 429, TRUNCATED_1YJP, b"<html>maintenance</html>"],
    ids=["500", "503", "429", "truncated-gzip", "not-a-structure"],
)
def test_transient_problem_is_retried(server, tmp_path, first_reply):
    server.routes["/1YJP.cif.gz"] = [first_reply, CIF_1YJP]

    result = fetch_entry("1YJP", tmp_path, http_settings(server.url_template))

    assert (result.status, result.attempts) == ("ok", 2)
    assert server.hits["/1YJP.cif.gz"] == 2
    assert result.path.read_bytes() == CIF_1YJP
    assert files_in(tmp_path) == ["1yjp.cif.gz"]


def test_short_uncompressed_body_is_retried(server, tmp_path):
    # Plain text has no checksum: only the Content-Length shows the body was cut.
    text = (MMCIF / "1YJP.cif").read_bytes()
    cut_at = text.index(b"\n", len(text) // 2) + 1
    server.routes["/1YJP.cif"] = [ShortRead(text[:cut_at]), text]

    result = fetch_entry("1YJP", tmp_path, http_settings(server.base_url + "/{pdb_id}.cif"))

    assert (result.status, result.attempts) == ("ok", 2)
    assert decompressed(result.path) == text


CIF_TEXT = (MMCIF / "1YJP.cif").read_bytes()
PDB_TEXT = (DATA / "1hvr.pdb").read_bytes()


def cut_at_line(text: bytes, fraction: float) -> bytes:
    """``text`` cut just after the line end nearest ``fraction`` of its length."""
    return text[: text.index(b"\n", int(len(text) * fraction)) + 1]


@pytest.mark.parametrize("content_length", [True, False], ids=["too-small-length", "no-length"])
@pytest.mark.parametrize(
    "text, cut, suffix",
    [(CIF_TEXT, cut_at_line(CIF_TEXT, 0.95), "cif"),        # a line boundary inside _atom_site
     (CIF_TEXT, CIF_TEXT[: len(CIF_TEXT) * 2 // 3], "cif"),  # mid-line
     (CIF_TEXT, CIF_TEXT[:-3], "cif"),                       # only the closing "#" lost
     (PDB_TEXT, cut_at_line(PDB_TEXT, 0.5), "pdb")],
    ids=["cif-at-line", "cif-mid-line", "cif-last-line", "pdb-at-line"])
def test_uncompressed_body_cut_without_a_true_length_is_retried(server, tmp_path, text, cut, suffix,
                                                               content_length):
    server.routes[f"/1YJP.{suffix}"] = [Cut(cut, content_length), text]

    result = fetch_entry("1YJP", tmp_path, http_settings(server.base_url + "/{pdb_id}." + suffix))

    assert (result.status, result.attempts) == ("ok", 2)
    assert decompressed(result.path) == text


def test_uncompressed_body_always_cut_fails_naming_why(server, tmp_path):
    server.routes["/1YJP.cif"] = [Cut(cut_at_line(CIF_TEXT, 0.95), False)]

    result = fetch_entry("1YJP", tmp_path, http_settings(server.base_url + "/{pdb_id}.cif", retries=1))

    assert (result.status, result.attempts) == ("failed", 2)
    assert "incomplete mmCIF text: ends inside the _atom_site loop" in result.reason
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("source", [MMCIF / "1YJP.cif", DATA / "1hvr.pdb", DATA / "4E43.pdb",
                                    MMCIF / "3KPR.cif.gz", DATA / "1a28.pdb.gz"])
def test_real_files_are_complete(tmp_path, source):
    data = source.read_bytes()
    path = tmp_path / "x.gz"
    path.write_bytes(data if source.suffix == ".gz" else gzip.compress(data))
    fmt = "cif" if ".cif" in source.name else "pdb"
    assert download.text_completeness_problem(path, fmt) is None


@pytest.mark.parametrize(
    "reply, reason",
    [(500, "HTTP 500"), (TRUNCATED_1YJP, "corrupt or truncated gzip")],
    ids=["500", "truncated-gzip"],
)
def test_persistent_problem_fails_after_retries_and_leaves_nothing(server, tmp_path, reply, reason):
    server.routes["/1YJP.cif.gz"] = [reply]

    result = fetch_entry("1YJP", tmp_path, http_settings(server.url_template, retries=2))

    assert (result.status, result.path, result.attempts, result.bytes) == ("failed", None, 3, 0)
    assert reason in result.reason
    assert server.hits["/1YJP.cif.gz"] == 3
    assert files_in(tmp_path) == []  # neither a corrupt final file nor a temporary one


def test_client_error_is_not_retried(server, tmp_path):
    server.routes["/1YJP.cif.gz"] = [403]

    result = fetch_entry("1YJP", tmp_path, http_settings(server.url_template))

    assert (result.status, result.attempts) == ("failed", 1)
    assert "HTTP 403" in result.reason


def test_connection_refused_fails_with_reason(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago; nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    settings = http_settings(f"http://127.0.0.1:{port}/{{pdb_id}}.cif.gz")
    result = fetch_entry("1YJP", tmp_path, settings)

    assert (result.status, result.attempts) == ("failed", 3)
    assert "refused" in result.reason.lower()
    assert files_in(tmp_path) == []


def test_stalled_server_times_out(tmp_path):
    # The kernel completes the handshake for a listening socket, but nobody ever answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        template = f"http://127.0.0.1:{silent.getsockname()[1]}/{{pdb_id}}.cif.gz"
        start_s = time.monotonic()
        result = fetch_entry("1YJP", tmp_path, http_settings(template, retries=1, timeout_s=0.2))

    assert (result.status, result.attempts) == ("failed", 2)
    assert "timed out" in result.reason
    assert time.monotonic() - start_s < 3


def test_second_fetch_is_cached_without_a_request(server, tmp_path):
    server.routes["/1YJP.cif.gz"] = [CIF_1YJP]
    settings = http_settings(server.url_template)
    first = fetch_entry("1YJP", tmp_path, settings)

    second = fetch_entry("1YJP", tmp_path, settings)

    assert second == FetchResult("1yjp", "cached", first.path, "", 0, len(CIF_1YJP))
    assert server.hits["/1YJP.cif.gz"] == 1


def test_invalid_file_at_final_path_is_fetched_again(server, tmp_path):
    (tmp_path / "1yjp.cif.gz").write_bytes(TRUNCATED_1YJP)
    server.routes["/1YJP.cif.gz"] = [CIF_1YJP]

    result = fetch_entry("1YJP", tmp_path, http_settings(server.url_template))

    assert result.status == "ok"
    assert result.path.read_bytes() == CIF_1YJP


def test_invalid_file_at_final_path_is_removed_even_if_fetching_fails(server, tmp_path):
    (tmp_path / "1yjp.cif.gz").write_bytes(TRUNCATED_1YJP)
    server.routes["/1YJP.cif.gz"] = [500]

    result = fetch_entry("1YJP", tmp_path, http_settings(server.url_template))

    assert result.status == "failed"
    assert files_in(tmp_path) == []


def test_malformed_id_fails_without_a_request(server, tmp_path):
    result = fetch_entry("12ASA", tmp_path, http_settings(server.url_template))

    assert (result.status, result.attempts) == ("failed", 0)
    assert "PDB id" in result.reason
    assert not server.hits


# --- fetch_entry from a mirror ------------------------------------------------------


@pytest.mark.parametrize(
    "mirror_name, source, stored_name",
    [
        ("yj/1yjp.cif.gz", MMCIF / "1YJP.cif.gz", "1yjp.cif.gz"),  # wwPDB divided layout
        ("1yjp.cif.gz", MMCIF / "1YJP.cif.gz", "1yjp.cif.gz"),  # flat
        ("1YJP.cif", MMCIF / "1YJP.cif", "1yjp.cif.gz"),  # upper case, uncompressed
        ("kp/pdb3kpr.ent.gz", MMCIF / "3KPR.pdb.gz", "3kpr.pdb.gz"),  # divided PDB format
        ("3kpr.pdb.gz", MMCIF / "3KPR.pdb.gz", "3kpr.pdb.gz"),
        ("1hvr.pdb", DATA / "1hvr.pdb", "1hvr.pdb.gz"),
    ],
)
def test_mirror_copy(tmp_path, mirror_name, source, stored_name):
    mirror = tmp_path / "mirror"
    (mirror / mirror_name).parent.mkdir(parents=True)
    (mirror / mirror_name).write_bytes(source.read_bytes())
    dest = tmp_path / "pdb"

    result = fetch_entry(stored_name[:4], dest, mirror_settings(mirror))

    assert (result.status, result.path, result.attempts) == ("ok", dest / stored_name, 1)
    text = gzip.decompress(source.read_bytes()) if source.suffix == ".gz" else source.read_bytes()
    assert decompressed(result.path) == text
    assert files_in(dest) == [stored_name]


def test_mirror_prefers_mmcif_over_pdb_format(tmp_path):
    (tmp_path / "1bd2.pdb.gz").write_bytes((MMCIF / "1BD2.pdb.gz").read_bytes())
    (tmp_path / "1BD2.cif.gz").write_bytes((MMCIF / "1BD2.cif.gz").read_bytes())

    result = fetch_entry("1BD2", tmp_path / "pdb", mirror_settings(tmp_path))

    assert result.path.name == "1bd2.cif.gz"


def test_not_in_mirror_is_missing(tmp_path):
    dest = tmp_path / "pdb"

    result = fetch_entry("1YJP", dest, mirror_settings(tmp_path))

    assert (result.status, result.path) == ("missing", None)
    assert str(tmp_path) in result.reason
    assert files_in(dest) == []


def test_corrupt_mirror_file_fails_without_leaving_files(tmp_path):
    (tmp_path / "1yjp.cif.gz").write_bytes(TRUNCATED_1YJP)
    dest = tmp_path / "pdb"

    result = fetch_entry("1YJP", dest, mirror_settings(tmp_path))

    assert result.status == "failed"
    assert "1yjp.cif.gz" in result.reason and "truncated" in result.reason
    assert files_in(dest) == []


# --- fetch_shard --------------------------------------------------------------------


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream, delimiter="\t"))


def test_shard_manifest_and_rerun_after_failure(server, tmp_path):
    served = {i: (MMCIF / f"{i.upper()}.cif.gz").read_bytes() for i in ("1yjp", "3kpr", "5pti")}
    server.routes.update({f"/{i.upper()}.cif.gz": [body] for i, body in served.items()})
    server.routes["/5PTI.cif.gz"] = [500]  # down during the first run
    dest, manifest = tmp_path / "pdb", tmp_path / "manifests" / "shard_0.tsv"
    settings = http_settings(server.url_template, retries=1)
    ids = ["1yjp", "9ZZZ", "5PTI", "3KPR", "1YJP"]  # 9ZZZ is not served: 404

    results = fetch_shard(ids, dest, settings, manifest, progress=False)

    rows = read_tsv(manifest)
    assert list(rows[0]) == list(MANIFEST_COLUMNS)
    assert [(r["pdb_id"], r["status"]) for r in rows] == [
        ("1yjp", "ok"), ("9zzz", "obsolete"), ("5pti", "failed"), ("3kpr", "ok")]
    assert [(r.pdb_id, r.status) for r in results] == [(r["pdb_id"], r["status"]) for r in rows]
    ok = rows[0]
    assert (ok["path"], ok["attempts"], ok["bytes"], ok["reason"]) == (
        str(dest / "1yjp.cif.gz"), "1", str(len(served["1yjp"])), "")
    assert rows[2]["path"] == "" and rows[2]["attempts"] == "2" and "HTTP 500" in rows[2]["reason"]
    assert files_in(manifest.parent) == ["shard_0.tsv"]  # journal and temporary file gone

    server.routes["/5PTI.cif.gz"] = [served["5pti"]]
    rerun = fetch_shard(ids, dest, settings, manifest, progress=False)

    assert [(r.pdb_id, r.status) for r in rerun] == [
        ("1yjp", "cached"), ("9zzz", "obsolete"), ("5pti", "ok"), ("3kpr", "cached")]
    assert server.hits == {
        "/1YJP.cif.gz": 1, "/3KPR.cif.gz": 1, "/9ZZZ.cif.gz": 2, "/5PTI.cif.gz": 3}
    assert [r["status"] for r in read_tsv(manifest)] == ["cached", "obsolete", "ok", "cached"]


def test_interrupted_shard_keeps_journal_and_rerun_skips_stored(server, tmp_path, monkeypatch):
    for pdb_id in ("1YJP", "3KPR", "5PTI"):
        server.routes[f"/{pdb_id}.cif.gz"] = [(MMCIF / f"{pdb_id}.cif.gz").read_bytes()]
    dest, manifest = tmp_path / "pdb", tmp_path / "shard_0.tsv"
    settings = http_settings(server.url_template)
    real_fetch_entry = download.fetch_entry

    def interrupted_at_3kpr(pdb_id, *args):
        if pdb_id == "3kpr":
            time.sleep(0.2)  # let the shard journal the entries finished before it
            raise KeyboardInterrupt
        return real_fetch_entry(pdb_id, *args)

    monkeypatch.setattr(download, "fetch_entry", interrupted_at_3kpr)
    with pytest.raises(KeyboardInterrupt):
        fetch_shard(["1YJP", "5PTI", "3KPR"], dest, settings, manifest, progress=False, workers=1)

    assert not manifest.exists()
    journal = tmp_path / "shard_0.tsv.partial"
    journal_rows = [(r["pdb_id"], r["status"]) for r in read_tsv(journal)]
    assert journal_rows == [("1yjp", "ok"), ("5pti", "ok")]

    monkeypatch.setattr(download, "fetch_entry", real_fetch_entry)
    rerun = fetch_shard(["1YJP", "5PTI", "3KPR"], dest, settings, manifest, progress=False)

    assert [r.status for r in rerun] == ["cached", "cached", "ok"]
    assert server.hits == {"/1YJP.cif.gz": 1, "/5PTI.cif.gz": 1, "/3KPR.cif.gz": 1}
    assert not journal.exists()


def test_interrupt_cancels_queued_entries(tmp_path, monkeypatch):
    started = []

    def slow_then_interrupted(pdb_id, *args):
        started.append(pdb_id)
        if pdb_id == "1aaa":
            raise KeyboardInterrupt
        time.sleep(0.05)
        return FetchResult(pdb_id, "missing", None, "", 1, 0)

    monkeypatch.setattr(download, "fetch_entry", slow_then_interrupted)
    ids = ["1AAA"] + [f"2{i:03d}" for i in range(20)]
    with pytest.raises(KeyboardInterrupt):
        fetch_shard(ids, tmp_path, mirror_settings(tmp_path), tmp_path / "m.tsv",
                    progress=False, workers=1)

    assert len(started) <= 2  # the entry already picked up by the worker may still run


def test_shard_ids_is_a_sorted_round_robin():
    ids = ["3kpr", "1YJP", "5PTI", "1yjp", "2ABC"]
    assert shard_ids(ids, 2) == [["1yjp", "3kpr"], ["2abc", "5pti"]]
    assert shard_ids(["1ABC"], 3) == [["1abc"], [], []]
    with pytest.raises(ValueError, match="n_shards"):
        shard_ids(["1ABC"], 0)


# --- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "source", [MMCIF / "5PTI.cif.gz", MMCIF / "3PWP.pdb.gz", DATA / "1a28.pdb.gz"])
def test_real_structures_are_valid(source):
    validate_structure_file(source)


@pytest.mark.parametrize(
    "content, reason",
    [
        (TRUNCATED_1YJP, "truncated"),
        (CIF_1YJP[:-4] + b"\0\0\0\0", "corrupt"),  # wrong stored length
        ((MMCIF / "1YJP.cif").read_bytes(), "not gzip"),
        (gzip.compress(b"<html>Service unavailable</html>"), "neither mmCIF"),
        (gzip.compress(b""), "empty"),
    ],
    ids=["truncated", "bad-trailer", "uncompressed", "html", "empty"],
)
def test_invalid_files_are_rejected_with_path_and_reason(tmp_path, content, reason):
    path = tmp_path / "1yjp.cif.gz"
    path.write_bytes(content)

    with pytest.raises(ValueError, match=reason) as error:
        validate_structure_file(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({}, "url_template"),
        ({"url_template": "http://x/{pdb_id}.cif.gz", "mirror_dir": "."}, "mirror_dir"),
        ({"url_template": "http://x/{id}.cif.gz"}, "url_template"),
        ({"url_template": "http://x/latest.cif.gz"}, "url_template"),
        ({"mirror_dir": "/nonexistent/mirror"}, "mirror_dir"),
        ({"mirror_dir": ".", "retries": -1}, "retries"),
        ({"mirror_dir": ".", "timeout_s": 0}, "timeout_s"),
    ],
)
def test_settings_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        FetchSettings(**{**FAST, **kwargs})


# --- Snakemake script ---------------------------------------------------------------


@pytest.fixture
def restore_root_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], root.level = handlers, level


@pytest.mark.parametrize(
    "ids_text",
    ["1yjp\n\n5PTI\n",  # one id per line
     "chain_key\tpdb_id\tchain\n1yjp_A\t1yjp\tA\n1yjp_B\t1yjp\tB\n5pti_A\t5pti\tA\n"],
    ids=["plain", "shard-tsv"],
)
def test_script_writes_manifest_and_log(tmp_path, restore_root_logging, ids_text):
    mirror = tmp_path / "mirror"
    (mirror / "yj").mkdir(parents=True)
    (mirror / "yj" / "1yjp.cif.gz").write_bytes(CIF_1YJP)
    ids_file = tmp_path / "shard_0.tsv"
    ids_file.write_text(ids_text)
    # As Snakemake params arrive: the unused source as "" (or None), every other key set
    # (the config schema fills the defaults)
    settings = {"url_template": "", "mirror_dir": str(mirror), "retries": 1,
                "backoff_s": 0.0, "timeout_s": 5.0}
    manifest, log_path = tmp_path / "manifests" / "shard_0.tsv", tmp_path / "shard_0.log"

    script = runpy.run_path(str(SCRIPT))  # what the Snakemake glue does, minus Snakemake
    script["run_script"](script["main"], log_path, ids_file=ids_file, dest_dir=tmp_path / "pdb",
                         manifest=manifest, settings_dict=settings)

    assert [(r["pdb_id"], r["status"]) for r in read_tsv(manifest)] == [
        ("1yjp", "ok"), ("5pti", "missing")]
    log_text = log_path.read_text()
    assert "shard of 2 entries" in log_text and "5pti: missing" in log_text


PISCES_TEXT = (b"IDs         length  Exptl.  resolution  R-factor  FreeRvalue\n"
               b"12ASA          330    XRAY       2.200      0.16        0.29\n")


def test_pisces_list_download_retries_and_checks_content(server, tmp_path):
    from equivox.pisces import parse_pisces

    server.routes["/cullpdb"] = [500, b"<html>busy</html>", PISCES_TEXT]
    dest = tmp_path / "list.txt"

    attempts = download_file(server.base_url + "/cullpdb", dest, retries=3, backoff_s=0.01,
                             check=parse_pisces)

    assert attempts == 3 and dest.read_bytes() == PISCES_TEXT
    assert files_in(tmp_path) == ["list.txt"]


def test_pisces_list_download_gives_up_naming_the_url(server, tmp_path):
    server.routes["/cullpdb"] = [503]
    with pytest.raises(DownloadError, match=r"/cullpdb after 2 attempt\(s\): HTTP 503"):
        download_file(server.base_url + "/cullpdb", tmp_path / "l.txt", retries=1, backoff_s=0.01)
    assert files_in(tmp_path) == []


# --- failure limit and end-of-run summary -------------------------------------------


def results_of(statuses):
    return [FetchResult(f"{i + 1}abc", status, None, "HTTP 503" if status == "failed" else "", 1, 0)
            for i, status in enumerate(statuses)]


def test_failure_limit_counts_only_failed_entries(tmp_path):
    manifest = tmp_path / "000.tsv"
    check_failed_fraction(results_of(["ok", "obsolete", "missing", "failed"]), 0.25, manifest)
    with pytest.raises(ShardFailedError, match=r"000.tsv: 2 of 4 entries failed \(50%\), more than "
                                               r"config structures.max_failed_fraction = 0.25"):
        check_failed_fraction(results_of(["ok", "failed", "failed", "cached"]), 0.25, manifest)
    check_failed_fraction([], 0.0, manifest)


def test_summary_counts_names_manifests_and_gives_the_retry_command(tmp_path):
    def manifest(name, statuses):
        download._write_manifest(results_of(statuses), tmp_path / name)

    manifest("000.tsv", ["ok", "cached"])
    manifest("001.tsv", ["ok", "failed", "obsolete"])
    manifest("002.tsv.rejected", ["failed", "failed"])

    lines = fetch_summary(tmp_path)

    text = "\n".join(lines)
    assert "7 entries: 2 ok, 1 cached, 1 obsolete, 0 missing, 3 failed" in text
    assert f"1 obsolete (HTTP 404/410, not retried): {tmp_path / '001.tsv'}" in text
    assert f"3 FAILED (reasons in the manifests): {tmp_path / '001.tsv'} {tmp_path / '002.tsv.rejected'}" in text
    assert "1 shard(s) over structures.max_failed_fraction" in text
    assert lines[-1].endswith(f"--forcerun {tmp_path / '001.tsv'}")
    assert fetch_summary(tmp_path / "none") == []
