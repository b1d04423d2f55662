"""asr/base/files.py: a file written atomically is on disk before it replaces the old one, and its name is too."""
import os

from asr.base.files import write_text_atomically


def test_an_atomic_write_reaches_the_disk_before_the_rename_and_the_rename_after(tmp_path, monkeypatch):
    """Without fsync a rename can reach the disk before the data it names: after a power cut the file would be
    there, empty or partial. So: the new contents are synced, then renamed over the old file, then the folder
    (which holds the name) is synced."""
    target = tmp_path / "last.ckpt"
    target.write_text("old")
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_text_atomically(target, "new")
    assert target.read_text() == "new"
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "replace", "fsync"], events
    assert events[0][1].startswith(str(tmp_path / ".last.ckpt."))  # the temporary file, with its data
    assert events[2][1] == str(tmp_path)  # the folder, with the new name
