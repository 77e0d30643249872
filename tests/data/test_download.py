"""Downloads against a loopback HTTP server (with Range support), and safe extraction."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from audio_superres.data.download import (
    REGISTRY,
    ChecksumError,
    Dataset,
    DownloadError,
    RemoteFile,
    UnsafeArchiveError,
    archive_org_files,
    download_file,
    extract_archive,
    fetch,
    main,
)


@dataclass
class Served:
    """What the loopback server serves and what it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    cut_once: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before closing
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    served: Served

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        served = self.server.served  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        served.requests.append((self.path, rng))
        data = served.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start, end, status = 0, len(data) - 1, 200
        if rng and not served.ignore_range:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng)
            assert m, rng
            start = int(m[1])
            end = int(m[2]) if m[2] else len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start : end + 1]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        cut = served.cut_once.pop(self.path, None)
        if cut is not None:
            self.wfile.write(body[:cut])  # then drop the connection mid-body
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(monkeypatch) -> Iterator[tuple[str, Served]]:
    """(base URL, Served) of a ThreadingHTTPServer on 127.0.0.1 in a thread."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.served = Served()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.served  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


def tiny_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tiny_tar(add) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        add(tf)
    return buf.getvalue()


def tar_entry(tf: tarfile.TarFile, name: str, data: bytes = b"x", **kw) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if not kw else 0
    for k, v in kw.items():
        setattr(info, k, v)
    tf.addfile(info, io.BytesIO(data) if not kw else None)


ARCHIVE_ENTRIES = {
    "wav48_silence_trimmed/p225/p225_001_mic1.flac": bytes(range(256)) * 40,
    "txt/p225/p225_001.txt": b"Please call Stella.\n",
    "speaker-info.txt": b"ID AGE GENDER\n",
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_full_download_verifies_and_extracts(server, tmp_path: Path) -> None:
    base, served = server
    archive = tiny_zip(ARCHIVE_ENTRIES)
    served.files["/VCTK.zip"] = archive
    ds = Dataset(
        name="tiny",
        description="test",
        default_dest=str(tmp_path / "unused"),
        license="test",
        files=(RemoteFile(f"{base}/VCTK.zip", "VCTK.zip", len(archive), sha256(archive)),),
        extract=True,
    )
    dest = fetch(ds, tmp_path / "VCTK", progress=False)
    assert (dest / "VCTK.zip").read_bytes() == archive
    for name, data in ARCHIVE_ENTRIES.items():
        assert (dest / name).read_bytes() == data
    assert not list(dest.glob("*.part")) and not list(dest.glob(".extract-*"))
    assert json.loads((dest / ".extracted-VCTK.zip.json").read_text())["extracted"] == [
        "speaker-info.txt",
        "txt",
        "wav48_silence_trimmed",
    ]
    n = len(served.requests)
    fetch(ds, tmp_path / "VCTK", progress=False)  # idempotent: nothing fetched again
    assert len(served.requests) == n


def test_a_cut_transfer_resumes_with_a_range_request(server, tmp_path: Path) -> None:
    base, served = server
    data = bytes(range(256)) * 400
    served.files["/big.bin"] = data
    served.cut_once["/big.bin"] = len(data) // 2
    out = download_file(
        f"{base}/big.bin",
        tmp_path / "big.bin",
        size=len(data),
        checksums={"sha256": sha256(data)},
        backoff_s=0.0,
        progress=False,
    )
    assert out.read_bytes() == data and not (tmp_path / "big.bin.part").exists()
    assert served.requests == [("/big.bin", None), ("/big.bin", f"bytes={len(data) // 2}-")]


def test_an_interrupted_run_is_resumed_by_the_next_run(server, tmp_path: Path) -> None:
    base, served = server
    data = b"0123456789" * 1000
    served.files["/f.bin"] = data
    served.cut_once["/f.bin"] = 3000
    kw = dict(size=len(data), checksums={"md5": hashlib.md5(data).hexdigest()}, progress=False)
    with pytest.raises(DownloadError, match=r"f.bin.part holds 3000 bytes: run the same command"):
        download_file(f"{base}/f.bin", tmp_path / "f.bin", retries=0, **kw)
    assert not (tmp_path / "f.bin").exists()
    assert (tmp_path / "f.bin.part").read_bytes() == data[:3000]
    download_file(f"{base}/f.bin", tmp_path / "f.bin", retries=0, **kw)
    assert (tmp_path / "f.bin").read_bytes() == data
    assert served.requests[-1] == ("/f.bin", "bytes=3000-")


def test_a_server_that_ignores_range_restarts_cleanly(server, tmp_path: Path) -> None:
    base, served = server
    data = b"abcdefgh" * 500
    served.files["/f.bin"] = data
    served.ignore_range = True
    (tmp_path / "f.bin.part").write_bytes(b"GARBAGE!")  # a stale part of something else
    download_file(
        f"{base}/f.bin",
        tmp_path / "f.bin",
        size=len(data),
        checksums={"sha256": sha256(data)},
        progress=False,
    )
    assert (tmp_path / "f.bin").read_bytes() == data


def test_a_corrupted_download_is_detected_and_not_kept(server, tmp_path: Path) -> None:
    base, served = server
    good = bytes(range(256)) * 20
    bad = bytearray(good)
    bad[1000] ^= 0xFF
    served.files["/f.zip"] = bytes(bad)
    target = tmp_path / "f.zip"
    with pytest.raises(ChecksumError) as err:
        download_file(
            f"{base}/f.zip",
            target,
            size=len(good),
            checksums={"sha256": sha256(good)},
            progress=False,
        )
    message = str(err.value)
    assert str(target.with_name("f.zip.part")) in message and sha256(good) in message
    assert sha256(bytes(bad)) in message and "deleted" in message
    assert not target.exists() and not target.with_name("f.zip.part").exists()
    served.files["/g.zip"] = good + b"extra"
    with pytest.raises(DownloadError, match=f"server reports {len(good) + 5} bytes"):
        download_file(f"{base}/g.zip", tmp_path / "g.zip", size=len(good), progress=False)
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{base}/missing.zip", tmp_path / "m.zip", progress=False)


def test_unregistered_checksum_is_printed(server, tmp_path: Path, capsys) -> None:
    base, served = server
    served.files["/x"] = b"payload"
    download_file(f"{base}/x", tmp_path / "x", progress=False)
    assert f"sha256 {sha256(b'payload')}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: tiny_zip({"ok.txt": b"1", "../evil.txt": b"2"}), "contains '..'"),
        (lambda: tiny_zip({"/tmp/evil.txt": b"2"}), "absolute path"),
        (lambda: tiny_tar(lambda tf: tar_entry(tf, "a/../../evil.txt")), "contains '..'"),
        (
            lambda: tiny_tar(
                lambda tf: tar_entry(tf, "link", type=tarfile.SYMTYPE, linkname="../../outside")
            ),
            "leads out of the target",
        ),
        (
            lambda: tiny_tar(
                lambda tf: tar_entry(tf, "etc", type=tarfile.SYMTYPE, linkname="/etc")
            ),
            "absolute path",
        ),
        (
            lambda: tiny_tar(
                lambda tf: tar_entry(tf, "h", type=tarfile.LNKTYPE, linkname="../secret")
            ),
            "contains '..'",
        ),
        (
            lambda: tiny_tar(
                lambda tf: (
                    tar_entry(tf, "d/up", type=tarfile.SYMTYPE, linkname=".."),
                    tar_entry(tf, "d/up/up2", type=tarfile.SYMTYPE, linkname=".."),
                )
            ),
            "written through the link",
        ),
        (
            lambda: tiny_tar(lambda tf: tar_entry(tf, "dev", type=tarfile.CHRTYPE)),
            "device or FIFO",
        ),
    ],
)
def test_malicious_archives_are_refused_before_writing(tmp_path: Path, make, problem) -> None:
    archive = tmp_path / "bad.archive"
    archive.write_bytes(make())
    dest = tmp_path / "a" / "b" / "dest"
    with pytest.raises(UnsafeArchiveError, match=problem) as err:
        extract_archive(archive, dest, progress=False)
    assert str(archive) in str(err.value)
    assert list(dest.iterdir()) == []  # nothing extracted, no temporary left
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "a" / "evil.txt").exists()


def test_zip_symlink_out_is_refused_and_safe_tar_extracts(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "../../outside")
    (tmp_path / "l.zip").write_bytes(buf.getvalue())
    with pytest.raises(UnsafeArchiveError, match="leads out of the target"):
        extract_archive(tmp_path / "l.zip", tmp_path / "z", progress=False)

    def good(tf: tarfile.TarFile) -> None:
        tar_entry(tf, "VCTK-Corpus/wav48/p225/p225_001.wav", b"RIFF")
        tar_entry(tf, "VCTK-Corpus/latest", type=tarfile.SYMTYPE, linkname="wav48/p225")

    (tmp_path / "g.tar.gz").write_bytes(tiny_tar(good))
    names = extract_archive(tmp_path / "g.tar.gz", tmp_path / "t", progress=False)
    assert names == ["VCTK-Corpus"]
    assert (tmp_path / "t/VCTK-Corpus/latest/p225_001.wav").read_bytes() == b"RIFF"


def test_archive_org_items_are_listed_and_verified(server, tmp_path: Path) -> None:
    base, served = server
    ogg, mp3 = b"OggS" + bytes(500), b"ID3" + bytes(100)
    item = "BeethovenPianoSonataNo.1"
    served.files[f"/metadata/{item}"] = json.dumps(
        {
            "files": [
                {
                    "name": "Sonata 1.ogg",
                    "size": str(len(ogg)),
                    "md5": hashlib.md5(ogg).hexdigest(),
                    "sha1": hashlib.sha1(ogg).hexdigest(),
                },
                {"name": "Sonata 1.mp3", "size": str(len(mp3)), "md5": "0" * 32},
            ]
        }
    ).encode()
    served.files[f"/download/{item}/Sonata%201.ogg"] = ogg
    files = archive_org_files(item, base=base)
    assert [f.name for f in files] == [f"{item}/Sonata 1.ogg"] and files[0].size == len(ogg)
    ds = Dataset(
        name="piano-test",
        description="",
        default_dest="",
        license="",
        archive_org_items=(item,),
    )
    dest = fetch(ds, tmp_path / "piano", mirror=base, progress=False)
    assert (dest / item / "Sonata 1.ogg").read_bytes() == ogg
    assert not (dest / item / "Sonata 1.mp3").exists()
    served.files["/metadata/evil"] = json.dumps({"files": [{"name": "../x.ogg"}]}).encode()
    with pytest.raises(UnsafeArchiveError, match="contains '..'"):
        archive_org_files("evil", base=base)


def test_registry_and_command_line(capsys) -> None:
    vctk = REGISTRY["vctk"].files[0]
    assert vctk.url.startswith("https://datashare.ed.ac.uk/") and vctk.name.endswith("0.92.zip")
    assert vctk.size and vctk.sha256 and len(vctk.sha256) == 64
    assert len(REGISTRY["piano"].archive_org_items) == 32
    assert main(["list"]) == 0
    assert "vctk" in capsys.readouterr().out


def test_corpora_download_on_prepare(server, tmp_path: Path, monkeypatch) -> None:
    """VCTKCorpus(download=True) and PianoCorpus(download=True) fetch through the registry."""
    import audio_superres.data.download as download_mod
    from audio_superres.data import PianoCorpus, VCTKCorpus

    from .test_vctk import P225_NUMBERS, make_vctk

    base, served = server
    tree = make_vctk(tmp_path / "src", "0.92", ["p225"], {"p225": P225_NUMBERS})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(tree.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(tree).as_posix())
    archive = buf.getvalue()
    served.files["/VCTK-Corpus-0.92.zip"] = archive
    ogg = (tmp_path / "src" / "wav48_silence_trimmed" / "p225" / "p225_001_mic1.flac").read_bytes()
    served.files["/metadata/Sonata1"] = json.dumps(
        {"files": [{"name": "s1.flac", "size": len(ogg), "md5": hashlib.md5(ogg).hexdigest()}]}
    ).encode()
    served.files["/download/Sonata1/s1.flac"] = ogg
    registry = {
        "vctk": Dataset(
            name="vctk",
            description="",
            default_dest="",
            license="",
            files=(
                RemoteFile(
                    f"{base}/VCTK-Corpus-0.92.zip",
                    "VCTK-Corpus-0.92.zip",
                    len(archive),
                    sha256(archive),
                ),
            ),
            extract=True,
        ),
        "piano": Dataset(
            name="piano",
            description="",
            default_dest="",
            license="",
            archive_org_items=("Sonata1",),
            archive_org_suffixes=(".flac",),
            archive_org_base=base,
        ),
    }
    monkeypatch.setattr(download_mod, "REGISTRY", registry)
    vctk = VCTKCorpus(tmp_path / "VCTK", split="single", download=True)
    vctk.prepare()
    assert len(vctk.split()["test"]) == 8 and vctk.tree.release == "0.92"
    piano = PianoCorpus(tmp_path / "piano", download=True)
    piano.prepare()
    assert [f.speaker for f in piano.files()] == ["Sonata1/s1"]
