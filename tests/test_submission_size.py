"""scripts/submission_size.py: a binary file changed counts its old and new bytes (as base85 text), a file added
then removed counts twice, and the pack holds each version once."""
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts/submission_size.py"


def git(repo, *args):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout


def test_binary_changes_count_their_old_and_new_bytes(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("hello\n")
    git(tmp_path, "add", "."), git(tmp_path, "commit", "-qm", "base")
    base = git(tmp_path, "rev-parse", "HEAD").strip()
    (tmp_path / "m.bin").write_bytes(os.urandom(1 << 20) + b"\0")
    git(tmp_path, "add", "."), git(tmp_path, "commit", "-qm", "ship")
    (tmp_path / "m.bin").write_bytes(os.urandom(2 << 20) + b"\0")
    git(tmp_path, "add", "."), git(tmp_path, "commit", "-qm", "ship again")
    git(tmp_path, "rm", "-q", "m.bin"), git(tmp_path, "commit", "-qm", "gone")
    done = subprocess.run([sys.executable, str(SCRIPT), base], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    diffs = float(next(line for line in done.stdout.splitlines() if line.startswith("diffs:")).split()[1])
    # 1 (added) + 1 + 2 (replaced) + 2 (removed) MiB of random bytes, written as base85 (5 characters for 4 bytes, a
    # length character and a newline for every 52 bytes): 1.29x
    assert 6 * 1.25 <= diffs < 6 * 1.35, diffs
    packed = float(next(line for line in done.stdout.splitlines() if line.startswith("packed:")).split()[1])
    assert 2.9 < packed < 3.2  # the two versions, random bytes: incompressible
