"""`asr download` against local copies of the upstream archives (no machine here reaches the internet)."""
import tarfile

import pytest

from asr.cli import main
from asr.data.download import DownloadError, download


@pytest.fixture(scope="module")
def fsdd_archive(tmp_path_factory, data_dir):
    """A tarball laid out like GitHub's archive of the pinned FSDD commit."""
    path = tmp_path_factory.mktemp("mirror") / "fsdd.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        tar.add(data_dir / "fsdd/recordings", arcname="free-spoken-digit-dataset-26eb9aa/recordings")
    return path


def test_download_verifies_and_unpacks(tmp_path, fsdd_archive, capsys):
    assert main(["download", "fsdd", "--data-dir", str(tmp_path), "--url", fsdd_archive.as_uri()]) == 0
    assert len(list((tmp_path / "fsdd/recordings").glob("*.wav"))) == 3000
    assert "verified and unpacked" in capsys.readouterr().out
    # a second run finds it in place and does not download again
    download("fsdd", tmp_path, url="file:///nonexistent.tar.gz")


def test_corrupted_archive_is_rejected_and_nothing_is_installed(tmp_path, data_dir):
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        tar.add(data_dir / "fsdd/recordings/0_george_0.wav", arcname="x/recordings/0_george_0.wav")
        tar.add(data_dir / "fsdd/recordings/0_george_0.wav", arcname="x/recordings/0_george_1.wav")  # wrong bytes
    with pytest.raises(DownloadError, match=r"fsdd: 2999 of 3000 files fail verification: .*0_george_1.wav \(checksum mismatch\)"):
        download("fsdd", tmp_path / "data", url=bad.as_uri())
    assert not (tmp_path / "data/fsdd").exists()


def test_offline_gives_a_clear_message(tmp_path, capsys):
    rc = main(["download", "an4", "--data-dir", str(tmp_path), "--url", "http://127.0.0.1:9/an4.tar.gz"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "could not download an4 from http://127.0.0.1:9/an4.tar.gz" in err and "Are you offline?" in err


def test_existing_folder_that_is_not_the_corpus_is_never_overwritten(tmp_path, fsdd_archive):
    mine = tmp_path / "fsdd"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    with pytest.raises(DownloadError, match="fail verification"):
        download("fsdd", tmp_path, url=fsdd_archive.as_uri())
    assert (mine / "notes.txt").read_text() == "my notes"


@pytest.fixture
def tiny_librispeech(tmp_path, data_dir):
    """A dev-clean archive in LibriSpeech's published layout (two chapters, real AN4 speech as FLAC), in a folder laid
    out as OpenSLR's mirrors are (<subset>.tar.gz)."""
    from asr.data.corpora import load_split
    from helpers import librispeech_layout

    librispeech_layout(tmp_path / "made/LibriSpeech", "dev-clean", load_split("an4", "test", data_dir)[:4])
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with tarfile.open(mirror / "dev-clean.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "made/LibriSpeech", arcname="LibriSpeech")
    return mirror


def test_librispeech_subsets_are_checked_before_unpacking_and_read_back(tiny_librispeech, tmp_path, monkeypatch, capsys):
    import asr.data.download
    from asr.base.files import sha256
    from asr.data.corpora import load_split

    data = tmp_path / "data"
    argv = ["download", "librispeech", "--subset", "dev-clean", "--data-dir", str(data), "--url", tiny_librispeech.as_uri()]
    # not the published archive: refused, nothing unpacked
    assert main(argv) == 2
    assert "does not have the published checksum" in capsys.readouterr().err
    assert not (data / "LibriSpeech/dev-clean").exists()
    # the same archive, had it been the published one
    published = {**asr.data.download.LIBRISPEECH_SHA256, "dev-clean": sha256(tiny_librispeech / "dev-clean.tar.gz")}
    monkeypatch.setattr(asr.data.download, "LIBRISPEECH_SHA256", published)
    assert main(argv) == 0
    assert "verified and unpacked" in capsys.readouterr().out
    utterances = load_split("librispeech", "dev", data)
    assert len(utterances) == 4 and {u.speaker for u in utterances} == {"84", "85"} and all(u.path.is_file() for u in utterances)
    # again: found, verified file by file, not fetched (the mirror is gone)
    assert main([*argv[:-1], "file:///nonexistent/"]) == 0
    assert "already present and verified" in capsys.readouterr().out
    next((data / "LibriSpeech/dev-clean").rglob("*.flac")).write_bytes(b"changed")
    assert main(argv) == 2
    assert "1 of 6 files fail verification" in capsys.readouterr().err
    # a subset folder that `asr download` did not make is never touched
    (data / "LibriSpeech/test-clean").mkdir()
    assert main(["download", "librispeech", "--subset", "test-clean", "--data-dir", str(data)]) == 2
    assert "was not unpacked by `asr download`" in capsys.readouterr().err
    assert main(["download", "librispeech", "--subset", "dev-cleaner", "--data-dir", str(data)]) == 2
    assert "unknown LibriSpeech subset(s) dev-cleaner" in capsys.readouterr().err
