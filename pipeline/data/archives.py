"""Fetching official dataset archives: resumable streaming download, checksums, safe extraction.

Layout under data/raw/<dataset>/:
    <archive file>   the downloaded archive, kept so its checksum can be verified on re-runs
    source.json      url, sha256, size: recorded on first download, verified afterwards
    files/           the extracted archive; appears only once extraction finished (atomic rename)
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import stat
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from pipeline.errors import PipelineError
from pipeline.io import atomic_dir, write_json

CHUNK = 1 << 20


class DownloadError(PipelineError):
    """The archive cannot be fetched or used; names the URL or file."""


class ChecksumError(DownloadError):
    """The archive is not the one recorded (or pinned by data.sha256)."""


class UnsafeArchiveError(DownloadError):
    """A member would land outside the target folder."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _total_size(resp, offset: int) -> int | None:
    content_range = resp.headers.get("Content-Range")  # "bytes 100-999/1000"
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        return int(total) if total.isdigit() else None
    length = resp.headers.get("Content-Length")
    return int(length) + offset if length and length.isdigit() else None


def download(url: str, dest: Path, *, attempts: int = 5, timeout: float = 60.0, backoff: float = 1.0,
             progress: bool = True) -> Path:
    """Stream `url` to `dest`, resuming a partial `dest.part` with an HTTP Range request.

    A dropped connection is retried (up to `attempts` times), each retry continuing where the
    last one stopped. `dest` appears only when the transfer is complete.
    """
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for attempt in range(attempts):
        offset = part.stat().st_size if part.exists() else 0
        req = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                if offset and resp.status != 206:  # server ignored the range: start over
                    offset = 0
                total = _total_size(resp, offset)
                if total is not None and offset >= total:
                    break
                with open(part, "ab" if offset else "wb") as f, tqdm(
                        total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name,
                        disable=not progress) as bar:
                    for block in iter(lambda: resp.read(CHUNK), b""):
                        f.write(block)
                        bar.update(len(block))
                size = part.stat().st_size
                if total is not None and size < total:
                    raise DownloadError(f"connection closed at {size} of {total} bytes")
                break
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:  # range not satisfiable: the part is already complete
                break
            if 400 <= e.code < 500:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}; check data.dataset or data.url") from None
            last_error = e
        except (urllib.error.URLError, OSError, http.client.HTTPException, DownloadError) as e:
            if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise  # retrying cannot help; the partial file stays and is resumed once space is freed
            last_error = e
        time.sleep(backoff * (attempt + 1))
    else:
        raise DownloadError(f"{url}: failed after {attempts} attempts ({last_error}); "
                            f"the partial file {part} is kept and the next run resumes it")
    os.replace(part, dest)
    return dest


def verify_checksum(archive: Path, record: Path, pinned: str | None) -> str:
    """Check `archive` against the pinned sha256 or the one recorded by the first download.

    Records it (trust on first use) when neither exists. A mismatch moves the archive aside
    (<name>.corrupt) so it is never extracted and the next run downloads it afresh.
    """
    digest = sha256_file(archive)
    recorded = json.loads(record.read_text())["sha256"] if record.exists() else None
    expected = pinned or recorded
    if expected is not None and digest != expected:
        bad = archive.with_name(archive.name + ".corrupt")
        os.replace(archive, bad)
        source = "data.sha256 in params.yaml" if pinned else str(record)
        raise ChecksumError(f"{archive}: sha256 {digest} does not match {expected} from {source}; "
                            f"moved to {bad}. Re-run to download again, or fix the pinned checksum.")
    return digest


def _check_member(name: str, link_target: str | None, target: Path) -> None:
    """Refuse a member whose path, or whose link target, would land outside `target`."""
    for label, path in (("path", name), ("link target", link_target)):
        if path is None:
            continue
        p = PurePosixPath(path.replace("\\", "/"))
        if p.is_absolute() or (len(path) > 1 and path[1] == ":"):
            raise UnsafeArchiveError(f"archive member {name!r}: absolute {label} {path!r} refused")
        base = PurePosixPath(name).parent if label == "link target" else PurePosixPath()
        resolved = os.path.normpath(str(base / p))
        if resolved == ".." or resolved.startswith("../"):
            raise UnsafeArchiveError(f"archive member {name!r}: {label} {path!r} escapes the target folder; refused")


def safe_extract(archive: Path, target: Path) -> Path:
    """Extract a .zip or .tar(.gz) into `target` atomically, refusing members that escape it.

    Links are refused outright if they point outside; device files and the like are refused too.
    """
    with atomic_dir(target) as tmp:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    mode = info.external_attr >> 16
                    link = zf.read(info).decode("utf-8", "replace") if stat.S_ISLNK(mode) else None
                    _check_member(info.filename, link, target)
                    if link is not None:
                        raise UnsafeArchiveError(f"archive member {info.filename!r}: symbolic links are not extracted")
                zf.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for m in members:
                    _check_member(m.name, m.linkname if (m.issym() or m.islnk()) else None, target)
                    if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
                        raise UnsafeArchiveError(f"archive member {m.name!r}: special file refused")
                # The 'data' filter is a second guard from the standard library (PEP 706).
                tf.extractall(tmp, members=members, filter="data")
        else:
            raise DownloadError(f"{archive}: neither a zip nor a tar archive")
    return target


def fetch_archive(url: str, folder: Path, pinned_sha256: str | None, *, progress: bool = True) -> Path:
    """Download (or resume), verify and extract one archive into folder/files. Idempotent."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / PurePosixPath(url.split("?")[0]).name
    record = folder / "source.json"
    files = folder / "files"
    if not archive.exists():
        download(url, archive, progress=progress)
    digest = verify_checksum(archive, record, pinned_sha256)
    write_json(record, {"url": url, "sha256": digest, "bytes": archive.stat().st_size})
    marker = files / ".complete"
    if not (marker.exists() and marker.read_text() == digest):
        safe_extract(archive, files)
        marker.write_text(digest)
    return files
