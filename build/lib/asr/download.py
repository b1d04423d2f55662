"""`asr download`: fetch a corpus from upstream, unpack it, and check every file against a sha256 manifest.

GitHub's archive tarballs are not byte-stable over time, so instead of one checksum of the tarball the
project ships a manifest with the sha256 of every file it reads (asr/manifests/<corpus>.sha256, made
from the pinned upstream commit with `sha256sum`, paths relative to the corpus folder). A corpus is moved into place only once every file matches, and an
existing folder is never overwritten.
"""
from __future__ import annotations

import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .checkpoint import sha256
from .errors import UserError

MANIFESTS = Path(__file__).parent / "manifests"

SOURCES = {
    "an4": dict(
        url="https://github.com/cmusphinx/an4/archive/b567d132f43304e70a2b2eca6077f22255311812.tar.gz",
        folder="an4",
        patterns=("etc/an4_train.transcription", "etc/an4_test.transcription", "wav/**/*.wav"),
    ),
    "fsdd": dict(
        url="https://github.com/Jakobovski/free-spoken-digit-dataset/archive/26eb9aaf76e81b692f806f9140c2d2777410d7a1.tar.gz",
        folder="fsdd",
        patterns=("recordings/*.wav",),
    ),
}


class DownloadError(UserError):
    pass


def verify(name: str, root: Path) -> None:
    """Raises DownloadError naming the files that are missing or differ from the manifest."""
    lines = (MANIFESTS / f"{name}.sha256").read_text().splitlines()
    bad = []
    for line in lines:
        digest, rel = line.split("  ", 1)
        path = root / rel
        if not path.is_file():
            bad.append(f"{rel} (missing)")
        elif sha256(path) != digest:
            bad.append(f"{rel} (checksum mismatch)")
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise DownloadError(f"{name}: {len(bad)} of {len(lines)} files fail verification: {shown}")


def download(name: str, data_dir: Path, url: str | None = None) -> Path:
    """Downloads corpus `name` into data_dir/<folder> and returns that folder."""
    if name not in SOURCES:
        raise DownloadError(f"no download for {name!r}: choose one of {', '.join(SOURCES)}")
    source = SOURCES[name]
    target = Path(data_dir) / source["folder"]
    if target.exists():
        verify(name, target)  # raises if what is there is not the corpus; never overwrite it
        print(f"{name}: already present and verified at {target}")
        return target
    url = url or source["url"]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-download-") as tmp:
        archive = Path(tmp) / "archive.tar.gz"
        print(f"{name}: downloading {url}")
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as f:
                shutil.copyfileobj(response, f)
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(
                f"could not download {name} from {url} ({getattr(e, 'reason', e)}). Are you offline? "
                f"Fetch it by hand from {source['url']}, unpack it as {target} and run this command again to verify it, "
                f"or pass --data-dir to a folder that already holds {source['folder']}/"
            ) from None
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(Path(tmp) / "unpacked", filter="data")
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DownloadError(f"{name}: {url} is not a readable tar archive ({e})") from None
        unpacked = Path(tmp) / "unpacked"
        tops = [p for p in unpacked.iterdir()]
        root = tops[0] if len(tops) == 1 and tops[0].is_dir() else unpacked  # GitHub adds <repo>-<commit>/
        verify(name, root)
        shutil.move(str(root), target)
    print(f"{name}: verified and unpacked into {target}")
    return target
