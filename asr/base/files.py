"""Files every layer writes or checks: atomic writes and sha256.

Atomic: written to a temporary file beside the target, then renamed into place, so that a reader (or a
process killed mid-write) sees the old file or the whole new one, never half of it. No torch at import:
the torch-free ONNX path and the downloads use this module too.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomically(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Calls write(temporary_path), then renames the temporary file onto `path`. The temporary name carries
    the process id: several processes (DDP ranks) may write the same file at once, and the last rename wins."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_atomically(obj: Any, path: str | Path) -> Path:
    """torch.save, atomically."""
    import torch

    return write_atomically(path, lambda tmp: torch.save(obj, tmp))


def write_text_atomically(path: str | Path, text: str) -> Path:
    return write_atomically(path, lambda tmp: tmp.write_text(text))
