"""Open a page in headless Chromium (Debian `chromium`, `make setup`) and report broken media."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

# Loads the page in an iframe (same file:// origin with --allow-file-access-from-files) and waits
# for every <audio> to reach its metadata (or fail) and every <img> to decode (or fail).
_CHECKER = """<!DOCTYPE html><html><body><pre id="result">pending</pre>
<iframe id="f" src="PAGE_URL" width="1200" height="900"></iframe>
<script>
const out = document.getElementById('result');
document.getElementById('f').addEventListener('load', () => {
  const doc = document.getElementById('f').contentDocument;
  const media = [...doc.querySelectorAll('audio')].map(a => new Promise(res => {
    const r = ok => res({tag: 'audio', src: a.getAttribute('src'), ok: ok});
    if (a.readyState >= 1) return r(true);
    a.addEventListener('loadedmetadata', () => r(true));
    a.addEventListener('error', () => r(false));
    a.load();
  }));
  const imgs = [...doc.querySelectorAll('img')].map(i => new Promise(res => {
    const done = () => res({tag: 'img', src: i.getAttribute('src'), ok: i.naturalWidth > 0});
    if (i.complete) return done();
    i.addEventListener('load', done); i.addEventListener('error', done);
  }));
  Promise.all([...media, ...imgs]).then(r => { out.textContent = 'RESULT' + JSON.stringify(r); });
});
</script></body></html>
"""


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is not installed: run `make setup` (Debian package chromium)"
    return exe


def _run(args: list[str]) -> str:
    proc = subprocess.run(
        [chromium(), "--headless", "--disable-gpu", "--no-sandbox", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def check_media(page: Path, work_dir: Path) -> list[dict]:
    """Every <audio>/<img> of `page` as {tag, src, ok}, as loaded by Chromium from disk."""
    checker = work_dir / "check_media.html"
    checker.write_text(_CHECKER.replace("PAGE_URL", page.resolve().as_uri()))
    dom = _run(
        [
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
            "--dump-dom",
            checker.as_uri(),
        ]
    )
    found = re.search(r"RESULT(\[.*?\])</pre>", dom, re.S)
    assert found, f"the page did not finish loading its media: {dom[:500]}"
    return json.loads(found.group(1))


def screenshot(page: Path, png: Path) -> Path:
    _run([f"--screenshot={png}", "--window-size=1200,1600", page.resolve().as_uri()])
    assert png.is_file() and png.stat().st_size > 1000
    return png
