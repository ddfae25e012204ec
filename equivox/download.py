"""Stage 2, PDB download: fetch structure files for many PDB entries, robustly.

An entry comes either from a URL template (RCSB by default) or from a local mirror
directory, and is stored as ``dest_dir/{id}.cif.gz`` (mmCIF) or ``dest_dir/{id}.pdb.gz``
(PDB format). Ids are lower case everywhere, as in the wwPDB archive and the rest of
equivox; input ids may be in either case.
The stored file is always gzip-compressed and always complete: it is written to a
temporary file in ``dest_dir``, decompressed in full to check it, and only then renamed
into place, so a crash or a bad download never leaves a corrupt file at the final path.
Every body is checked for size: a short read against the Content-Length, when the
server sent one, is an error; a gzip body carries its own length and CRC; an
uncompressed body (whose Content-Length may be missing or itself wrong) must also be
structurally complete (:func:`text_completeness_problem`): mmCIF ends its last line,
closes the ``_atom_site`` loop and, when it uses wwPDB ``#`` category terminators, ends
with one; PDB format ends with an ``END`` (or ``ENDMDL``) record.

Per-entry problems never raise; they become a :class:`FetchResult` status:

    ok        fetched now
    cached    already present and valid; no network or mirror access
    obsolete  HTTP 404/410 (RCSB answers 404 for obsoleted entries); not retried
    missing   not in the mirror
    failed    still broken after the retries (5xx, timeouts, connection errors,
              truncated or corrupt gzip, content that is neither mmCIF nor PDB)

:func:`fetch_shard` handles one Snakemake job's worth of entries (hundreds), so the DAG
stays small at 10K entries, and writes a TSV manifest of the results.
"""
from __future__ import annotations

import csv
import gzip
import http.client
import logging
import random
import re
import shutil
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Literal
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from tqdm import tqdm

from equivox import __version__
from equivox.atomic import atomic_write, replacing
from equivox.errors import ReportedError

log = logging.getLogger(__name__)

Status = Literal["ok", "cached", "missing", "obsolete", "failed"]
MANIFEST_COLUMNS = ("pdb_id", "status", "path", "attempts", "bytes", "reason")

# Config keys of the ``structures`` section that change how hard fetching tries, not
# which data result: scripts read them from the config, rules never take them as
# params, and the origin database does not record them (changing them reruns nothing).
OPERATIONAL_STRUCTURE_KEYS = ("retries", "backoff_s", "timeout_s", "max_failed_fraction")

_PDB_ID = re.compile(r"[0-9][a-z0-9]{3}")
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK_BYTES = 1 << 20
_USER_AGENT = f"equivox/{__version__} (Python urllib)"
# Client errors that a later attempt can cure (timeout, rate limit); other 4xx cannot.
_RETRYABLE_4XX = frozenset({408, 429})
# File names a mirror may hold an entry under, most preferred first ({} is the id).
_MIRROR_NAMES = ("{}.cif.gz", "{}.cif", "pdb{}.ent.gz", "{}.pdb.gz", "{}.pdb")
# Record names that may open a PDB-format file (wwPDB format v3.3, title to coordinates).
_PDB_RECORDS = frozenset(
    "HEADER OBSLTE TITLE SPLIT CAVEAT COMPND SOURCE KEYWDS EXPDTA NUMMDL MDLTYP AUTHOR "
    "REVDAT SPRSDE JRNL REMARK DBREF DBREF1 DBREF2 SEQADV SEQRES MODRES HET HETNAM "
    "HETSYN FORMUL HELIX SHEET SSBOND LINK CISPEP SITE CRYST1 ORIGX1 ORIGX2 ORIGX3 "
    "SCALE1 SCALE2 SCALE3 MTRIX1 MTRIX2 MTRIX3 MODEL ATOM ANISOU TER HETATM".split()
)


class DownloadError(ReportedError, RuntimeError):
    """A single-file download (e.g. the PISCES list) that failed after its retries."""


class ShardFailedError(ReportedError):
    """More entries of a shard failed than ``structures.max_failed_fraction`` allows."""


@dataclass(frozen=True)
class FetchSettings:
    """Where entries come from and how hard to try. Set exactly one source.

    url_template: URL with the fields ``{pdb_id}`` (upper case), ``{pdb_id_lower}`` and
        ``{middle}`` (characters 2-3 of the id, lower case, as in the wwPDB divided
        layout), e.g. ``https://files.rcsb.org/download/{pdb_id}.cif.gz``.
    mirror_dir: local copy of the archive, divided (``xy/1xyz.cif.gz``) or flat
        (``1xyz.cif.gz``); ``.cif``, ``pdb1xyz.ent.gz``, ``1xyz.pdb.gz`` and ``1xyz.pdb``
        are accepted too. Mirror reads are not retried: a local file does not heal by
        waiting.
    retries: further HTTP attempts after the first, so at most ``retries + 1`` requests.
    backoff_s: wait before retry k (0-based) is ``backoff_s * 2**k``, plus up to 25%
        random jitter.
    timeout_s: how long a connection may stall (connect or one read), not a limit on
        the whole transfer, so large entries on slow links still complete.
    """

    url_template: str | None
    mirror_dir: Path | None
    retries: int
    backoff_s: float
    timeout_s: float

    def __post_init__(self) -> None:
        if (self.url_template is None) == (self.mirror_dir is None):
            raise ValueError(
                "FetchSettings: set exactly one of url_template and mirror_dir, got "
                f"url_template={self.url_template!r}, mirror_dir={self.mirror_dir!r}"
            )
        if self.url_template is not None:
            _check_url_template(self.url_template)
        if self.mirror_dir is not None:
            object.__setattr__(self, "mirror_dir", Path(self.mirror_dir))
            if not self.mirror_dir.is_dir():
                raise ValueError(f"FetchSettings: mirror_dir {self.mirror_dir} is not a directory")
        if self.retries < 0:
            raise ValueError(f"FetchSettings: retries must be >= 0, got {self.retries}")
        if self.backoff_s < 0:
            raise ValueError(f"FetchSettings: backoff_s must be >= 0, got {self.backoff_s}")
        if self.timeout_s <= 0:
            raise ValueError(f"FetchSettings: timeout_s must be > 0, got {self.timeout_s}")


@dataclass(frozen=True)
class FetchResult:
    """Outcome for one entry; one manifest row.

    pdb_id is lower case. path is the stored file for "ok" and "cached", else None.
    reason says what went wrong ("" on success). attempts counts requests or mirror
    look-ups made (0 when cached). bytes is the size of the stored (compressed) file.
    """

    pdb_id: str
    status: Status
    path: Path | None
    reason: str
    attempts: int
    bytes: int


def fetch_entry(pdb_id: str, dest_dir: Path, settings: FetchSettings) -> FetchResult:
    """Fetch one entry into ``dest_dir`` unless a valid copy is already there.

    Never raises for problems with the entry itself; see the module docstring for the
    statuses. A file at the final path that fails validation is deleted and fetched
    again.
    """
    pdb_id = _canonical_id(pdb_id)
    if not _PDB_ID.fullmatch(pdb_id):
        return FetchResult(pdb_id, "failed", None, "not a 4-character PDB id", 0, 0)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)

    cached = _valid_cached_file(pdb_id, dest_dir)
    if cached is not None:
        return FetchResult(pdb_id, "cached", cached, "", 0, cached.stat().st_size)
    if settings.mirror_dir is not None:
        return _copy_from_mirror(pdb_id, dest_dir, settings.mirror_dir)
    return _download(pdb_id, dest_dir, settings)


def fetch_shard(
    pdb_ids: Iterable[str],
    dest_dir: Path,
    settings: FetchSettings,
    manifest_path: Path,
    progress: bool = True,
    workers: int = 4,
) -> list[FetchResult]:
    """Fetch many entries with ``workers`` threads and write a TSV manifest.

    Returns one result per distinct id (case-insensitive), in input order. The manifest
    (columns ``MANIFEST_COLUMNS``) appears at ``manifest_path`` atomically, only once
    every entry has a result. Until then each result is appended, as it arrives, to the
    journal ``{manifest_path}.partial``, which shows how far an interrupted shard got.
    A rerun does not need the journal to skip work: entries whose files were stored
    are found valid on disk and reported "cached"; the rest are fetched again.
    """
    ids = list(dict.fromkeys(_canonical_id(i) for i in pdb_ids))
    manifest_path = Path(manifest_path)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    journal_path = manifest_path.with_name(manifest_path.name + ".partial")

    results: dict[str, FetchResult] = {}
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        open(journal_path, "a", newline="") as journal,
        tqdm(total=len(ids), disable=not progress, unit="entry", desc="fetch") as bar,
    ):
        journal_rows = csv.writer(journal, delimiter="\t", lineterminator="\n")
        if journal.tell() == 0:
            journal_rows.writerow(MANIFEST_COLUMNS)
        futures = [pool.submit(fetch_entry, pdb_id, dest_dir, settings) for pdb_id in ids]
        try:
            for future in as_completed(futures):
                result = future.result()
                results[result.pdb_id] = result
                journal_rows.writerow(_manifest_row(result))
                journal.flush()
                _log_result(result)
                bar.update()
        except BaseException:
            # Without this, leaving the `with` would wait for every queued entry.
            pool.shutdown(wait=False, cancel_futures=True)
            raise

    ordered = [results[pdb_id] for pdb_id in ids]
    _write_manifest(ordered, manifest_path)
    journal_path.unlink()
    counts = Counter(r.status for r in ordered)
    log.info("shard of %d entries -> %s: %s", len(ordered), manifest_path, dict(counts))
    return ordered


def check_failed_fraction(results: list[FetchResult], max_failed_fraction: float,
                          manifest_path: Path) -> None:
    """Raise ShardFailedError when the share of "failed" entries exceeds the limit.

    Only "failed" counts (network and content faults that a later try can cure);
    "obsolete" and "missing" are statements about the archive and never fail a shard.
    """
    failed = [r for r in results if r.status == "failed"]
    if results and len(failed) / len(results) > max_failed_fraction:
        first = failed[0]
        raise ShardFailedError(
            f"{manifest_path}: {len(failed)} of {len(results)} entries failed "
            f"({len(failed) / len(results):.0%}), more than config "
            f"structures.max_failed_fraction = {max_failed_fraction:g}; first {first.pdb_id}: "
            f"{first.reason}. A plain rerun retries this shard (stored entries are reused).")


def rejected_manifest_path(manifest_path: Path) -> Path:
    """Where a shard over the failure limit keeps its manifest (the job's own output is
    removed by Snakemake when the job fails)."""
    return Path(f"{manifest_path}.rejected")


def read_manifest(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def fetch_summary(manifest_dir: Path) -> list[str]:
    """End-of-run report lines for the manifests in ``manifest_dir`` ([] when none).

    Counts entries by status over every shard's newest manifest (``{shard}.tsv``, or
    ``{shard}.tsv.rejected`` when that shard last ended over the failure limit), names
    the manifests holding failed and obsolete entries, and gives the command that
    retries exactly the failed entries.
    """
    manifest_dir = Path(manifest_dir)
    newest: dict[str, Path] = {}
    for path in sorted(manifest_dir.glob("*.tsv")) + sorted(manifest_dir.glob("*.tsv.rejected")):
        shard = path.name.split(".")[0]
        if shard not in newest or path.stat().st_mtime >= newest[shard].stat().st_mtime:
            newest[shard] = path
    if not newest:
        return []
    counts: Counter = Counter()
    with_status: dict[str, list[Path]] = {"failed": [], "obsolete": [], "missing": []}
    for shard in sorted(newest):
        statuses = Counter(row["status"] for row in read_manifest(newest[shard]))
        counts.update(statuses)
        for status, paths in with_status.items():
            if statuses[status]:
                paths.append(newest[shard])
    order = ("ok", "cached", "obsolete", "missing", "failed")
    lines = [f"equivox: structure downloads ({len(newest)} shard manifests in {manifest_dir})",
             f"  {sum(counts.values())} entries: " + ", ".join(f"{counts[s]} {s}" for s in order)]
    listed = lambda paths: " ".join(str(p) for p in paths[:8]) + (" ..." if len(paths) > 8 else "")  # noqa: E731
    for status, note in (("obsolete", "HTTP 404/410, not retried"), ("missing", "not in the mirror")):
        if counts[status]:
            lines.append(f"  {counts[status]} {status} ({note}): {listed(with_status[status])}")
    if counts["failed"]:
        rejected = [p for p in with_status["failed"] if p.name.endswith(".rejected")]
        accepted = [p for p in with_status["failed"] if p not in rejected]
        lines.append(f"  {counts['failed']} FAILED (reasons in the manifests): {listed(with_status['failed'])}")
        if rejected:
            lines.append(f"  {len(rejected)} shard(s) over structures.max_failed_fraction: their "
                         "jobs failed, and a plain rerun retries them")
        if accepted:
            lines.append("  retry exactly the failed entries (stored files are reused, not fetched again):")
            lines.append("    snakemake <your usual options and targets> --forcerun "
                         + " ".join(str(p) for p in accepted))
    return lines


def validate_structure_file(path: Path) -> None:
    """Raise ValueError naming ``path`` unless it is a complete gzip of mmCIF or PDB text.

    Decompresses the whole file, since gzip's CRC and length are only checked at the end.
    """
    try:
        _structure_format(Path(path))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


# --- sources -------------------------------------------------------------------------


def _get_with_retries(url: str, store, what: str, retries: int, backoff_s: float,
                      timeout_s: float) -> tuple[object, int, str, int | None]:
    """GET ``url`` and ``store(response)``, retrying transient failures with
    exponential backoff (:func:`_backoff_delay_s`): 5xx, 408, 429, timeouts, connection
    errors, and content that ``store`` rejects with ValueError. Other 4xx end at once.

    Returns ``(stored, attempts, reason, http_code)``: ``stored`` is what ``store``
    returned (None on failure), ``reason`` why the last attempt failed, ``http_code``
    the status of a final HTTP error (404/410 mean gone: never retried).
    """
    request = Request(url, headers={"User-Agent": _USER_AGENT})
    reason, code = "", None
    for attempt in range(1, retries + 2):
        try:
            with urlopen(request, timeout=timeout_s) as response:
                return store(response), attempt, "", None
        except HTTPError as err:
            err.close()
            reason, code = f"HTTP {err.code} {err.reason}", err.code
            if err.code in (404, 410) or (err.code < 500 and err.code not in _RETRYABLE_4XX):
                break
        # OSError covers URLError (refused, DNS), TimeoutError and disk errors;
        # HTTPException covers IncompleteRead (connection closed before Content-Length);
        # ValueError is the store's verdict on the content (truncated gzip, not a structure).
        except (OSError, http.client.HTTPException, ValueError) as err:
            reason, code = f"{type(err).__name__}: {err}", None
        if attempt <= retries:
            wait_s = _backoff_delay_s(backoff_s, attempt - 1)
            log.warning("%s: attempt %d/%d failed (%s); retrying in %.2f s",
                        what, attempt, retries + 1, reason, wait_s)
            time.sleep(wait_s)
    return None, attempt, reason, code


def _download(pdb_id: str, dest_dir: Path, settings: FetchSettings) -> FetchResult:
    url = settings.url_template.format(**_template_fields(pdb_id))
    path, attempts, reason, code = _get_with_retries(
        url, lambda response: _store(pdb_id, response, dest_dir), pdb_id,
        settings.retries, settings.backoff_s, settings.timeout_s)
    if path is not None:
        return FetchResult(pdb_id, "ok", path, "", attempts, path.stat().st_size)
    if code in (404, 410):
        return FetchResult(pdb_id, "obsolete", None, f"HTTP {code} for {url}", attempts, 0)
    return FetchResult(pdb_id, "failed", None, f"{reason} for {url}", attempts, 0)


def _copy_from_mirror(pdb_id: str, dest_dir: Path, mirror_dir: Path) -> FetchResult:
    source = _find_in_mirror(pdb_id, mirror_dir)
    if source is None:
        return FetchResult(pdb_id, "missing", None, f"not in mirror {mirror_dir}", 1, 0)
    try:
        with open(source, "rb") as stream:
            path = _store(pdb_id, stream, dest_dir)
    except (OSError, ValueError) as err:
        return FetchResult(pdb_id, "failed", None, f"{source}: {err}", 1, 0)
    return FetchResult(pdb_id, "ok", path, "", 1, path.stat().st_size)


def _find_in_mirror(pdb_id: str, mirror_dir: Path) -> Path | None:
    """First existing file for the entry: mmCIF before PDB format, divided before flat.

    Both id cases are tried because hand-made mirrors often keep RCSB's upper-case names.
    """
    middle = _template_fields(pdb_id)["middle"]
    for pattern in _MIRROR_NAMES:
        for name in (pattern.format(pdb_id), pattern.format(pdb_id.upper())):
            for path in (mirror_dir / middle / name, mirror_dir / name):
                if path.is_file():
                    return path
    return None


def _canonical_id(pdb_id: str) -> str:
    return str(pdb_id).strip().lower()


def _template_fields(pdb_id: str) -> dict[str, str]:
    return {"pdb_id": pdb_id.upper(), "pdb_id_lower": pdb_id, "middle": pdb_id[1:3]}


def _check_url_template(url_template: str) -> None:
    try:
        urls = {url_template.format(**_template_fields(i)) for i in ("1abc", "2xyz")}
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"FetchSettings: url_template {url_template!r} is not a valid template "
            f"({type(err).__name__}: {err}); fields are {{pdb_id}}, {{pdb_id_lower}}, {{middle}}"
        ) from None
    if len(urls) == 1:
        raise ValueError(f"FetchSettings: url_template {url_template!r} does not use the PDB id")


def _backoff_delay_s(backoff_s: float, retry_index: int) -> float:
    # Jitter keeps parallel shards that met the same outage from retrying in lockstep.
    return backoff_s * 2**retry_index * random.uniform(1.0, 1.25)


# --- storage and validation ------------------------------------------------------------


def _valid_cached_file(pdb_id: str, dest_dir: Path) -> Path | None:
    for fmt in ("cif", "pdb"):
        path = dest_dir / f"{pdb_id}.{fmt}.gz"
        if not path.exists():
            continue
        try:
            validate_structure_file(path)
            return path
        except ValueError as err:
            # Only a file written by something else (or a crash without fsync) gets here.
            log.warning("%s: removing invalid stored file (%s)", pdb_id, err)
            path.unlink()
    return None


def _store(pdb_id: str, source: BinaryIO, dest_dir: Path) -> Path:
    """Write ``source`` gzip-compressed to ``dest_dir/{id}.{cif|pdb}.gz`` atomically.

    Raises ValueError if the content is not a complete mmCIF/PDB file; OSError and
    http.client.HTTPException from reading ``source`` pass through. The temporary file
    is removed whatever happens.
    """
    # the format (cif or pdb) names the file; it is known once the content is read
    with replacing(dest_dir / f"{pdb_id}.gz") as pending:
        tmp = pending.tmp
        with open(tmp, "wb") as out:
            head = source.read(2)
            compressed_source = head == _GZIP_MAGIC
            if compressed_source:
                out.write(head)
                shutil.copyfileobj(source, out, _CHUNK_BYTES)
            else:
                # mtime=0 so that compressing the same file twice gives the same bytes.
                with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as compressed:
                    compressed.write(head)
                    shutil.copyfileobj(source, compressed, _CHUNK_BYTES)
        # http.client ends a body silently when the server hangs up early (only
        # unbounded reads raise IncompleteRead) and leaves the shortfall in .length.
        # An uncompressed body has no checksum, so this is the only sign of truncation.
        missing_bytes = getattr(source, "length", None)
        if missing_bytes:
            raise http.client.IncompleteRead(b"", missing_bytes)
        fmt = _structure_format(tmp)
        if not compressed_source:
            problem = text_completeness_problem(tmp, fmt)
            if problem:
                raise ValueError(f"incomplete {'mmCIF' if fmt == 'cif' else 'PDB'} text: {problem}")
        pending.target = dest_dir / f"{pdb_id}.{fmt}.gz"
    return pending.target


def _structure_format(path: Path) -> Literal["cif", "pdb"]:
    """"cif" or "pdb" for a complete gzip of mmCIF or PDB text; ValueError otherwise."""
    with open(path, "rb") as raw:
        if raw.read(2) != _GZIP_MAGIC:
            raise ValueError("not gzip-compressed")
    try:
        with gzip.open(path, "rb") as text:
            head = text.read(256)
            while text.read(_CHUNK_BYTES):
                pass
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"corrupt or truncated gzip ({type(err).__name__}: {err})") from None

    if head.lstrip().startswith(b"data_"):
        return "cif"
    first_line = head.split(b"\n", 1)[0]
    if first_line[:6].decode("ascii", "replace").strip() in _PDB_RECORDS:
        return "pdb"
    if not head:
        raise ValueError("empty after decompression")
    raise ValueError(f"neither mmCIF (no data_ block) nor PDB format: starts {first_line[:40]!r}")


_CIF_LOOP_END = ("#", "_", "loop_", "data_", "save_", "global_", "stop_")


def text_completeness_problem(path: Path, fmt: Literal["cif", "pdb"]) -> str | None:
    """Why the gzip-compressed structure text at ``path`` looks cut short, or None.

    For text that arrived uncompressed (no CRC, Content-Length possibly absent or
    wrong). mmCIF: the last line is complete (ends with a newline), the file has an
    ``_atom_site`` loop that is closed by the next category or ``#`` rather than by the
    end of the file, and a file written with wwPDB ``#`` category terminators ends
    with one. PDB format: the last record is ``END`` (wwPDB format v3.3, mandatory) or
    ``ENDMDL``.
    """
    last, ends_with_newline, hashes = "", True, False
    in_atom_site_header = in_atom_site_rows = saw_atom_site = False
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as text:
        for line in text:
            ends_with_newline = line.endswith("\n")
            stripped = line.strip()
            if not stripped:
                continue
            last = stripped
            if fmt != "cif":
                continue
            hashes |= stripped == "#"
            if stripped.startswith("_atom_site."):
                in_atom_site_header = saw_atom_site = True
            elif in_atom_site_header or in_atom_site_rows:
                ended = stripped.startswith(_CIF_LOOP_END)
                in_atom_site_rows = not ended
                in_atom_site_header = False
    if fmt == "pdb":
        record = last[:6].strip()
        return None if record in ("END", "ENDMDL") else f"last record is {last[:20]!r}, not END"
    if not ends_with_newline:
        return f"last line {last[-40:]!r} is cut (no newline at the end)"
    if not saw_atom_site:
        return "no _atom_site loop (ends before the coordinates)"
    if in_atom_site_rows:
        return "ends inside the _atom_site loop"
    if hashes and last != "#":
        return f"does not end with the '#' closing its last category (ends {last[-40:]!r})"
    return None


# --- manifest ----------------------------------------------------------------------------


def _manifest_row(result: FetchResult) -> list[str]:
    # Reasons quote server and OS messages; keep each row on one line.
    reason = " ".join(result.reason.split())
    path = "" if result.path is None else str(result.path)
    return [result.pdb_id, result.status, path, str(result.attempts), str(result.bytes), reason]


def _write_manifest(results: list[FetchResult], manifest_path: Path) -> None:
    def write(out) -> None:
        rows = csv.writer(out, delimiter="\t", lineterminator="\n")
        rows.writerow(MANIFEST_COLUMNS)
        rows.writerows(_manifest_row(r) for r in results)
    atomic_write(manifest_path, write)


def _log_result(result: FetchResult) -> None:
    if result.status == "failed":
        log.warning("%s: failed after %d attempt(s): %s",
                    result.pdb_id, result.attempts, result.reason)
    elif result.status in ("obsolete", "missing"):
        log.info("%s: %s (%s)", result.pdb_id, result.status, result.reason)


def download_file(url: str, dest: Path, retries: int = 4, backoff_s: float = 1.0,
                  timeout_s: float = 60.0, check=None) -> int:
    """Download one small file (e.g. a PISCES list) atomically; returns attempts used.

    ``check(path)`` may raise ValueError to reject the content (retried like a
    network error). Raises RuntimeError naming the URL after the last attempt.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)

    def store(response) -> Path:
        with replacing(dest) as pending:
            with open(pending.tmp, "wb") as out:
                shutil.copyfileobj(response, out, _CHUNK_BYTES)
            if check is not None:
                check(pending.tmp)
        return dest

    stored, attempts, reason, _ = _get_with_retries(url, store, url, retries, backoff_s, timeout_s)
    if stored is None:
        raise DownloadError(f"could not download {url} after {attempts} attempt(s): {reason}")
    return attempts
