"""Resumable, verified downloads of the corpora, and archive extraction that cannot escape.

    python -m audio_superres.data.download vctk  [--dest data/VCTK]    # VCTK 0.92, ~11 GB zip
    python -m audio_superres.data.download piano [--dest data/piano]   # Beethoven's 32 sonatas
    python -m audio_superres.data.download list

A download goes to ``<file>.part`` and continues where it stopped (HTTP Range) after a dropped
connection, within a run (`retries`) or in the next run. Only a file whose size and checksum
match is renamed to its final name, so a file under its final name is always complete. Archives
are checked member by member before anything is written: absolute paths, ``..`` and links that
lead out of the target are refused. Only `urllib` is used (no new dependency).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from audio_superres.errors import UserFacingError
from audio_superres.utils import atomic_write_json

__all__ = [
    "REGISTRY",
    "ChecksumError",
    "Dataset",
    "DownloadError",
    "RemoteFile",
    "UnsafeArchiveError",
    "archive_org_files",
    "download_file",
    "extract_archive",
    "fetch",
    "main",
    "verify_file",
]

USER_AGENT = "audio_superres-download/0.1 (+https://github.com/; research corpus download)"
CHUNK = 1 << 20
HASHES = ("sha256", "sha1", "md5")


class DownloadError(UserFacingError, RuntimeError):
    """A download that could not be completed; the message says what to do."""


class ChecksumError(DownloadError):
    """The downloaded bytes are not the registered ones (the bad file has been deleted)."""


class UnsafeArchiveError(UserFacingError, ValueError):
    """An archive member that would be written, or link, outside the extraction folder."""


_TAR_FILTER_ERRORS: tuple[type[Exception], ...] = tuple(
    e for e in (getattr(tarfile, "FilterError", None),) if e is not None
)


class _Retryable(Exception):
    """A transfer that stopped early: resume it."""


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: `name` is its path under the destination folder (posix)."""

    url: str
    name: str
    size: int | None = None
    sha256: str | None = None
    sha1: str | None = None
    md5: str | None = None

    @property
    def checksums(self) -> dict[str, str]:
        return {h: v.lower() for h in HASHES if (v := getattr(self, h))}


@dataclass(frozen=True)
class Dataset:
    """A downloadable corpus: fixed files (archives to extract) and/or archive.org items."""

    name: str
    description: str
    default_dest: str
    license: str
    files: tuple[RemoteFile, ...] = ()
    extract: bool = False
    archive_org_items: tuple[str, ...] = ()
    archive_org_suffixes: tuple[str, ...] = (".ogg",)
    archive_org_base: str = "https://archive.org"
    notes: str = ""


VCTK_URL = "https://datashare.ed.ac.uk/bitstream/handle/10283/3443/VCTK-Corpus-0.92.zip"

# SampleRNN's "music" set (soroushmehr/sampleRNN_ICLR2017, datasets/music/itemlist.txt): one
# archive.org item per sonata; its script fetches every .ogg of each item
# (wget -A .ogg -i itemlist.txt -B http://archive.org/download/). We list the same items and read
# each item's file list, sizes and checksums from archive.org's metadata API.
BEETHOVEN_ITEMS = (
    "BeethovenPianoSonataNo.1",
    "BeethovenPianoSonataNo.2",
    "BeethovenPianoSonataNo.3",
    "BeethovenPianoSonataNo.4",
    "BeethovenPianoSonataNo.5",
    "BeethovenPianoSonataNo.6",
    "BeethovenPianoSonataNo.7",
    "BeethovenPianoSonataNo.8",
    "BeethovenPianoSonataNo.9",
    "BeethovenPianoSonataNo.10",
    "BeethovenPianoSonataNo.11",
    "BeethovenPianoSonataNo.12",
    "BeethovenPianoSonata13",
    "BeethovenPianoSonataNo.14moonlight",
    "BeethovenPianoSonata15",
    "BeethovenPianoSonata16",
    "BeethovenPianoSonata17",
    "BeethovenPianoSonataNo.18",
    "BeethovenPianoSonataNo.19",
    "BeethovenPianoSonataNo.20",
    "BeethovenPianoSonataNo.21Waldstein",
    "BeethovenPianoSonata22",
    "BeethovenPianoSonataNo.23",
    "BeethovenPianoSonataNo.24",
    "BeethovenPianoSonataNo.25",
    "BeethovenPianoSonataNo.26",
    "BeethovenPianoSonataNo.27",
    "BeethovenPianoSonataNo.28",
    "BeethovenPianoSonataNo.29",
    "BeethovenPianoSonataNo.30",
    "BeethovenPianoSonataNo.31",
    "BeethovenPianoSonataNo.32",
)

REGISTRY: dict[str, Dataset] = {
    "vctk": Dataset(
        name="vctk",
        description="VCTK 0.92 (CSTR, University of Edinburgh): 110 speakers, 48 kHz FLAC",
        default_dest="data/VCTK",
        license="CC BY 4.0",
        files=(
            RemoteFile(
                url=VCTK_URL,
                name="VCTK-Corpus-0.92.zip",
                # Size: the Hugging Face `vctk` dataset card (download_size); sha256: torchaudio's
                # VCTK_092 (_CHECKSUMS). The server's Content-Length is checked against it too.
                size=11_747_302_977,
                sha256="f96258be9fdc2cbff6559541aae7ea4f59df3fcaf5cf963aae5ca647357e359c",
            ),
        ),
        extract=True,
        notes="extracts wav48_silence_trimmed/, txt/ and speaker-info.txt into the destination",
    ),
    "piano": Dataset(
        name="piano",
        description="Beethoven's 32 piano sonatas from archive.org (SampleRNN's music set)",
        default_dest="data/piano",
        license="see each archive.org item (public-domain recordings per SampleRNN)",
        archive_org_items=BEETHOVEN_ITEMS,
        archive_org_suffixes=(".ogg",),
        notes="every .ogg of each item, verified against archive.org's md5/sha1",
    ),
}


# -- one file ------------------------------------------------------------------------------------


def _progress(total: int | None, initial: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar in bytes (tqdm comes with Lightning); a no-op object when disabled."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not enabled,
        file=sys.stderr,
        mininterval=0.5,
    )


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _content_range(value: str | None) -> tuple[int, int | None]:
    """(first byte, total or None) of a ``Content-Range: bytes a-b/total`` header."""
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not m:
        raise _Retryable(f"malformed Content-Range {value!r}")
    return int(m[1]), None if m[3] == "*" else int(m[3])


def _transfer(
    url: str, part: Path, size: int | None, timeout: float, progress: bool, desc: str
) -> None:
    """Fetch the rest of `url` into `part` (appending from its current size)."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, offset, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset and (size is None or offset >= size):
            return  # nothing left to fetch: the size check decides
        if e.code == 416:
            part.unlink()
            raise _Retryable(f"server refused to resume at byte {offset}; restarting") from e
        if e.code in (408, 429) or e.code >= 500:
            raise _Retryable(f"HTTP {e.code} {e.reason}") from e
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
    with resp:
        if offset and resp.status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _Retryable(f"server resumed at byte {start}, not {offset}; restarting")
            mode = "ab"
        elif resp.status == 200:
            offset, mode = 0, "wb"  # the server ignored the Range header: start over
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        else:
            raise DownloadError(f"{url}: unexpected HTTP status {resp.status}")
        if size is not None and total is not None and total != size:
            raise DownloadError(
                f"{url}: the server reports {total} bytes, the registry expects {size}; the "
                "file has changed upstream (update REGISTRY after checking it)"
            )
        expected = total if total is not None else size
        with open(part, mode) as f, _progress(expected, offset, desc, progress) as bar:
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (http.client.IncompleteRead, OSError) as e:
                    raise _Retryable(f"connection lost ({e})") from e
                if not chunk:
                    break
                f.write(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
    got = part.stat().st_size
    if expected is not None and got < expected:
        raise _Retryable(f"connection closed after {got} of {expected} bytes")


def _hash_file(path: Path, algorithms: Sequence[str], progress: bool) -> dict[str, str]:
    hashes = {a: hashlib.new(a) for a in algorithms}
    size = path.stat().st_size
    with open(path, "rb") as f, _progress(size, 0, f"verify {path.name}", progress) as bar:
        while chunk := f.read(CHUNK):
            for h in hashes.values():
                h.update(chunk)
            bar.update(len(chunk))
    return {a: h.hexdigest() for a, h in hashes.items()}


def verify_file(
    path: str | os.PathLike,
    size: int | None = None,
    checksums: dict[str, str] | None = None,
    progress: bool = False,
) -> dict[str, str]:
    """Check size and checksums of `path`; return its digests (sha256 at least).

    Raises ChecksumError("<path>: ...") naming what differs.
    """
    path = Path(path)
    checksums = {k: v.lower() for k, v in (checksums or {}).items()}
    unknown = sorted(set(checksums) - set(HASHES))
    if unknown:
        raise ValueError(f"unsupported checksum algorithm(s) {unknown}; use {HASHES}")
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumError(f"{path}: {actual_size} bytes, expected {size}")
    digests = _hash_file(path, sorted(set(checksums) | {"sha256"}), progress)
    for algorithm, expected in checksums.items():
        if digests[algorithm] != expected:
            raise ChecksumError(
                f"{path}: {algorithm} {digests[algorithm]} does not match the expected {expected}"
            )
    return digests


def download_file(
    url: str,
    path: str | os.PathLike,
    *,
    size: int | None = None,
    checksums: dict[str, str] | None = None,
    retries: int = 5,
    timeout: float = 60.0,
    backoff_s: float = 2.0,
    progress: bool = True,
) -> Path:
    """Download `url` to `path`, resuming `path.part`; verify size and checksums; return `path`.

    A dropped connection is resumed with an HTTP Range request up to `retries` times (then the
    ``.part`` file stays for the next run to resume). A checksum mismatch deletes the ``.part``
    file and raises ChecksumError: the final name only ever holds verified bytes. Without a
    registered checksum the sha256 is printed, to be recorded in REGISTRY.
    """
    path = Path(path)
    if path.is_file():
        if size is None or path.stat().st_size == size:
            return path  # only verified downloads are ever renamed to the final name
        raise DownloadError(
            f"{path}: exists with {path.stat().st_size} bytes, expected {size}; it is not a "
            "download of this tool: move it away and run again"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    if size is not None and part.exists() and part.stat().st_size > size:
        part.unlink()
    attempt = 0
    while True:
        try:
            _transfer(url, part, size, timeout, progress, path.name)
            break
        except (_Retryable, urllib.error.URLError, OSError, http.client.HTTPException) as e:
            if isinstance(e, urllib.error.HTTPError):
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
            attempt += 1
            held = part.stat().st_size if part.exists() else 0
            if attempt > retries:
                raise DownloadError(
                    f"{url}: download interrupted ({e}); {part} holds {held} bytes: run the "
                    "same command again to resume"
                ) from e
            print(
                f"[download] {path.name}: {e}; resuming at byte {held} (retry {attempt}/{retries})",
                file=sys.stderr,
            )
            time.sleep(min(backoff_s * 2 ** (attempt - 1), 60.0))
    try:
        digests = verify_file(part, size, checksums, progress)
    except ChecksumError as e:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"{e} (downloaded from {url}; the corrupt file was deleted: run again to download "
            "it afresh, or check the registry if it persists)"
        ) from e
    if not checksums:
        print(
            f"[download] {path}: no checksum registered; sha256 {digests['sha256']} "
            "(record it in audio_superres.data.download.REGISTRY)",
            file=sys.stderr,
        )
    os.replace(part, path)
    return path


# -- archives ------------------------------------------------------------------------------------


def _member_path(archive: Path, name: str) -> PurePosixPath:
    """The relative path of an archive member, or UnsafeArchiveError for `/x`, `C:x`, `..`."""
    clean = name.replace("\\", "/")
    if not clean or "\x00" in clean:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an invalid name")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refused")
    rel = PurePosixPath(clean)
    if ".." in rel.parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'; refused")
    return rel


def _link_stays_inside(archive: Path, member: str, target: str, *, hard: bool) -> None:
    """Refuse a symlink (relative to its folder) or hardlink (to the root) leading outside."""
    clean = target.replace("\\", "/")
    if not clean or clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        raise UnsafeArchiveError(
            f"{archive}: link {member!r} -> {target!r} points to an absolute path; refused"
        )
    base = PurePosixPath() if hard else PurePosixPath(member.replace("\\", "/")).parent
    depth = 0
    for part in (*base.parts, *PurePosixPath(clean).parts):
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            raise UnsafeArchiveError(
                f"{archive}: link {member!r} -> {target!r} leads out of the target; refused"
            )


def _not_through_links(archive: Path, names: Sequence[str], links: set[PurePosixPath]) -> None:
    """Refuse members below a link member: the lexical checks cannot see where they land."""
    for name in names:
        rel = _member_path(archive, name)
        for parent in rel.parents:
            if parent in links:
                raise UnsafeArchiveError(
                    f"{archive}: member {name!r} is written through the link {str(parent)!r}; "
                    "refused"
                )


def _zip_is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _check_zip(archive: Path, zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    members = zf.infolist()
    links = set()
    for info in members:
        rel = _member_path(archive, info.filename)
        if _zip_is_symlink(info):
            _link_stays_inside(archive, info.filename, zf.read(info).decode(), hard=False)
            links.add(rel)
    _not_through_links(archive, [i.filename for i in members], links)
    return members


def _check_tar(archive: Path, tf: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = tf.getmembers()
    links = {_member_path(archive, m.name) for m in members if m.issym() or m.islnk()}
    _not_through_links(archive, [m.name for m in members], links)
    for m in members:
        _member_path(archive, m.name)
        if m.issym():
            _link_stays_inside(archive, m.name, m.linkname, hard=False)
        elif m.islnk():
            _member_path(archive, m.linkname)
            _link_stays_inside(archive, m.name, m.linkname, hard=True)
        elif not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device or FIFO; refused")
    return members


def _merge_move(src: Path, dst: Path) -> None:
    """Move `src` onto `dst`, merging folders (an interrupted earlier move is completed)."""
    if dst.is_dir() and src.is_dir() and not src.is_symlink():
        for child in sorted(src.iterdir()):
            _merge_move(child, dst / child.name)
        src.rmdir()
    else:
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        os.replace(src, dst)


def extract_archive(
    archive: str | os.PathLike, dest: str | os.PathLike, progress: bool = True
) -> list[str]:
    """Extract a zip or tar archive into `dest`; return the top-level names it created.

    Every member is checked before anything is written (UnsafeArchiveError for absolute
    paths, ``..`` and links out of `dest`, device files), then the archive is extracted into a
    hidden folder inside `dest` and moved into place, so an interrupted extraction leaves
    nothing that looks extracted. Tar extraction also uses Python's "data" filter.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".extract-{archive.name}-{os.getpid()}"
    for stale in dest.glob(f".extract-{archive.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                members = _check_zip(archive, zf)
                total = sum(i.file_size for i in members)
                with _progress(total, 0, f"extract {archive.name}", progress) as bar:
                    for info in members:
                        rel = _member_path(archive, info.filename)
                        target = tmp.joinpath(*rel.parts)
                        if _zip_is_symlink(info):
                            target.parent.mkdir(parents=True, exist_ok=True)
                            os.symlink(zf.read(info).decode(), target)
                        elif info.is_dir():
                            target.mkdir(parents=True, exist_ok=True)
                        else:
                            target.parent.mkdir(parents=True, exist_ok=True)
                            with zf.open(info) as src, open(target, "wb") as out:
                                shutil.copyfileobj(src, out, CHUNK)
                        bar.update(info.file_size)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = _check_tar(archive, tf)
                kwargs: dict[str, Any] = {}
                if hasattr(tarfile, "data_filter"):
                    kwargs["filter"] = "data"
                with _progress(len(members), 0, f"extract {archive.name}", progress) as bar:
                    for m in members:
                        try:
                            tf.extract(m, tmp, **kwargs)
                        except _TAR_FILTER_ERRORS as e:
                            raise UnsafeArchiveError(f"{archive}: {e}; refused") from e
                        bar.update(1)
        else:
            raise UnsafeArchiveError(f"{archive}: neither a zip nor a tar archive")
        names = sorted(p.name for p in tmp.iterdir())
        for name in names:
            _merge_move(tmp / name, dest / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return names


# -- archive.org ---------------------------------------------------------------------------------


def _get_json(url: str, retries: int, timeout: float) -> Any:
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers={"User-Agent": USER_AGENT}), timeout=timeout
            ) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            if e.code < 500 or attempt == retries:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
            if attempt == retries:
                raise DownloadError(f"{url}: cannot read JSON ({e})") from e
        time.sleep(min(2.0 * 2**attempt, 30.0))
    raise AssertionError("unreachable")


def archive_org_files(
    item: str,
    suffixes: Sequence[str] = (".ogg",),
    base: str = "https://archive.org",
    retries: int = 3,
    timeout: float = 60.0,
) -> list[RemoteFile]:
    """The files of an archive.org item ending in `suffixes`, with sizes and md5/sha1.

    Read from ``<base>/metadata/<item>``; names are checked like archive members, so metadata
    cannot make us write outside the destination.
    """
    meta = _get_json(f"{base}/metadata/{urllib.parse.quote(item)}", retries, timeout)
    entries = meta.get("files") if isinstance(meta, dict) else None
    if not entries:
        raise DownloadError(f"{base}/metadata/{item}: no files listed (item missing or dark)")
    out = []
    for e in entries:
        name = str(e.get("name", ""))
        if not name.lower().endswith(tuple(s.lower() for s in suffixes)):
            continue
        rel = _member_path(Path(f"{base}/metadata/{item}"), name)
        size = e.get("size")
        quoted = f"{urllib.parse.quote(item)}/{urllib.parse.quote(rel.as_posix())}"
        out.append(
            RemoteFile(
                url=f"{base}/download/{quoted}",
                name=f"{item}/{rel.as_posix()}",
                size=int(size) if size is not None else None,
                sha1=e.get("sha1"),
                md5=e.get("md5"),
            )
        )
    if not out:
        raise DownloadError(f"{base}/metadata/{item}: no {'/'.join(suffixes)} files in this item")
    return sorted(out, key=lambda f: f.name)


# -- whole corpora -------------------------------------------------------------------------------


def _marker(dest: Path, archive_name: str) -> Path:
    return dest / f".extracted-{archive_name}.json"


def fetch(
    dataset: str | Dataset,
    dest: str | os.PathLike | None = None,
    *,
    extract: bool = True,
    remove_archive: bool = False,
    retries: int = 5,
    timeout: float = 60.0,
    progress: bool = True,
    mirror: str | None = None,
) -> Path:
    """Download (and extract) a registered corpus into `dest`; return `dest`. Idempotent.

    `mirror` replaces the URL of a single-file corpus, or archive.org's base URL.
    """
    ds = REGISTRY[dataset] if isinstance(dataset, str) else dataset
    dest = Path(dest if dest is not None else ds.default_dest)
    dest.mkdir(parents=True, exist_ok=True)
    record: list[dict[str, Any]] = []
    files = list(ds.files)
    if mirror and len(files) == 1:
        files = [RemoteFile(mirror, files[0].name, files[0].size, files[0].sha256)]
    for rf in files:
        marker = _marker(dest, rf.name)
        if ds.extract and marker.is_file():
            print(f"[download] {ds.name}: {rf.name} already extracted in {dest}", file=sys.stderr)
            continue
        path = download_file(
            rf.url,
            dest / rf.name,
            size=rf.size,
            checksums=rf.checksums,
            retries=retries,
            timeout=timeout,
            progress=progress,
        )
        record.append({"url": rf.url, "name": rf.name, "size": path.stat().st_size})
        if ds.extract:
            names = extract_archive(path, dest, progress)
            atomic_write_json(marker, {"archive": rf.name, "url": rf.url, "extracted": names})
            if remove_archive:
                path.unlink()
    base = mirror or ds.archive_org_base
    for item in ds.archive_org_items:
        for rf in archive_org_files(item, ds.archive_org_suffixes, base, retries, timeout):
            path = download_file(
                rf.url,
                dest / rf.name,
                size=rf.size,
                checksums=rf.checksums,
                retries=retries,
                timeout=timeout,
                progress=progress,
            )
            record.append({"url": rf.url, "name": rf.name, "size": path.stat().st_size})
    if record:
        atomic_write_json(
            dest / f".download-{ds.name}.json",
            {"dataset": ds.name, "license": ds.license, "files": record},
        )
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: fetch one registered corpus (or list them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=[*REGISTRY, "list"], help="corpus to download")
    parser.add_argument("--dest", type=Path, default=None, help="destination folder")
    parser.add_argument("--no-extract", action="store_true", help="keep archives packed")
    parser.add_argument("--remove-archive", action="store_true", help="delete after extracting")
    parser.add_argument("--retries", type=int, default=5, help="resumes per file and run")
    parser.add_argument("--timeout", type=float, default=60.0, help="socket timeout, seconds")
    parser.add_argument("--mirror", default=None, help="alternative URL (or archive.org base)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.dataset == "list":
        for ds in REGISTRY.values():
            print(f"{ds.name:6s} -> {ds.default_dest}: {ds.description} [{ds.license}]")
        return 0
    ds = REGISTRY[args.dataset]
    if args.no_extract:
        ds = replace(ds, extract=False)
    try:
        dest = fetch(
            ds,
            args.dest,
            remove_archive=args.remove_archive,
            retries=args.retries,
            timeout=args.timeout,
            progress=not args.quiet,
            mirror=args.mirror,
        )
    except (DownloadError, UnsafeArchiveError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{ds.name}: ready in {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
