"""`asr download`: fetch a corpus from upstream, unpack it, and check every file against a sha256 manifest.
(LibriSpeech: each subset's archive against its published sha256; see download_librispeech.)

GitHub's archive tarballs are not byte-stable over time, so instead of one checksum of the tarball the
project ships a manifest with the sha256 of every file it reads (asr/data/manifests/<corpus>.sha256, made
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

from asr.base.files import sha256
from asr.base.errors import UserError

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


# LibriSpeech (OpenSLR resource 12, CC BY 4.0) comes as one stable tarball per subset: each is checked against its
# sha256 before it is unpacked (the values torchaudio 2.9's LIBRISPEECH dataset pins for the same OpenSLR files),
# and the sha256 of every file unpacked is kept beside it (LibriSpeech/<subset>.sha256) to verify it later.
LIBRISPEECH_URL = "https://www.openslr.org/resources/12/"
LIBRISPEECH_SHA256 = {
    "dev-clean": "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
    "dev-other": "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
    "test-clean": "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
    "test-other": "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29",
    "train-clean-100": "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
    "train-clean-360": "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf",
    "train-other-500": "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2",
}
LIBRISPEECH_DEFAULT = ("train-clean-100", "dev-clean", "test-clean")  # what recipes/models/librispeech_lstm.yaml reads


class DownloadError(UserError):
    pass


def fetch(url: str, target: Path, name: str, upstream: str, hint: str) -> None:
    """Copies `url` to the file `target`, or says clearly that it could not (offline: what to do instead)."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as f:
            shutil.copyfileobj(response, f)
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"could not download {name} from {url} ({getattr(e, 'reason', e)}). Are you offline? "
                            f"Fetch it by hand from {upstream}, {hint}") from None


def unpack(archive: Path, into: Path, name: str, url: str) -> None:
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DownloadError(f"{name}: {url} is not a readable tar archive ({e})") from None


def verify(name: str, root: Path) -> None:
    """Raises DownloadError naming the files that are missing or differ from the manifest."""
    verify_files(name, root, MANIFESTS / f"{name}.sha256")


def verify_files(name: str, root: Path, manifest: Path) -> None:
    """Every `sha256  path` line of `manifest` (paths relative to root) checked; DownloadError names the failures."""
    lines = manifest.read_text().splitlines()
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
        fetch(url, archive, name, source["url"], f"unpack it as {target} and run this command again to verify it, "
                                                 f"or pass --data-dir to a folder that already holds {source['folder']}/")
        unpack(archive, Path(tmp) / "unpacked", name, url)
        unpacked = Path(tmp) / "unpacked"
        tops = [p for p in unpacked.iterdir()]
        root = tops[0] if len(tops) == 1 and tops[0].is_dir() else unpacked  # GitHub adds <repo>-<commit>/
        verify(name, root)
        shutil.move(str(root), target)
    print(f"{name}: verified and unpacked into {target}")
    return target


def download_librispeech(subsets: list[str], data_dir: Path, base_url: str | None = None) -> Path:
    """LibriSpeech subsets into data_dir/LibriSpeech/<subset>/, each archive checked against its sha256 before it is
    unpacked; a subset already there is verified file by file against the list written when it was unpacked."""
    unknown = [s for s in subsets if s not in LIBRISPEECH_SHA256]
    if unknown:
        raise DownloadError(f"unknown LibriSpeech subset(s) {', '.join(unknown)}: choose from {', '.join(LIBRISPEECH_SHA256)}")
    root = Path(data_dir) / "LibriSpeech"
    base = (base_url or LIBRISPEECH_URL).rstrip("/") + "/"
    for subset in subsets:
        manifest = root / f"{subset}.sha256"
        if (root / subset).exists():
            if not manifest.is_file():
                raise DownloadError(f"{root / subset} exists but was not unpacked by `asr download` (no {manifest.name} "
                                    "beside it): nothing was changed. Remove or move it to download it again.")
            verify_files(f"librispeech {subset}", root, manifest)
            print(f"librispeech {subset}: already present and verified at {root / subset}")
            continue
        url = f"{base}{subset}.tar.gz"
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=f".{subset}-download-") as tmp:
            archive = Path(tmp) / f"{subset}.tar.gz"
            print(f"librispeech {subset}: downloading {url}")
            fetch(url, archive, f"librispeech {subset}", f"{LIBRISPEECH_URL}{subset}.tar.gz",
                  f"put it in a folder and pass --url file:///that/folder/ (it is checked the same way)")
            if sha256(archive) != LIBRISPEECH_SHA256[subset]:
                raise DownloadError(f"librispeech {subset}: {url} does not have the published checksum (sha256 "
                                    f"{LIBRISPEECH_SHA256[subset][:12]}...): a damaged or different file; nothing "
                                    "was unpacked")
            unpack(archive, Path(tmp) / "unpacked", f"librispeech {subset}", url)
            unpacked = Path(tmp) / "unpacked" / "LibriSpeech" / subset
            if not unpacked.is_dir():
                raise DownloadError(f"librispeech {subset}: the archive holds no LibriSpeech/{subset}/ folder")
            files = sorted(p for p in unpacked.rglob("*") if p.is_file())
            lines = [f"{sha256(p)}  {p.relative_to(unpacked.parent).as_posix()}" for p in files]
            shutil.move(str(unpacked), root / subset)
            manifest.write_text("\n".join(lines) + "\n")
        print(f"librispeech {subset}: verified and unpacked into {root / subset} ({len(files)} files)")
    return root


def command(args) -> int:
    """`asr download an4|fsdd|librispeech ... [--data-dir D --url U --subset ...]`."""
    for name in args.datasets:
        if name == "librispeech":
            download_librispeech(args.subset, Path(args.data_dir), args.url)
        else:
            download(name, Path(args.data_dir), url=args.url)
    return 0
