"""Files every layer writes or checks: atomic writes, sha256, and the recipe a command is given.

Atomic: written to a temporary file beside the target, then renamed into place, so that a reader (or a
process killed mid-write) sees the old file or the whole new one, never half of it. No torch at import:
the torch-free ONNX path and the downloads use this module too.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable

from asr.base.errors import UserError


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomically(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Calls write(temporary_path), then renames the temporary file onto `path`. The temporary name carries
    the process id: several processes (DDP ranks) may write the same file at once, and the last rename wins.
    The data is synced to disk before the rename and the folder after it: otherwise, after a power cut, the new
    name could survive pointing at data that never reached the disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        sync(tmp)
        os.replace(tmp, path)
        sync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def sync(path: Path) -> None:
    """fsync of a file or a folder (the folder holds the names of its files)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_atomically(obj: Any, path: str | Path) -> Path:
    """torch.save, atomically."""
    import torch

    return write_atomically(path, lambda tmp: torch.save(obj, tmp))


def write_text_atomically(path: str | Path, text: str) -> Path:
    return write_atomically(path, lambda tmp: tmp.write_text(text))


def recipe_file(path: str | Path) -> Path:
    """The recipe at `path`; if there is none, a UserError that names where a recipe of that name is now (recipes/
    is grouped into models/, studies/ and streaming/; the recipes of past experiments live beside their reports;
    a stage of a staged recipe is run with --stage) or, failing that, what recipes there are."""
    import yaml

    path = Path(path)
    if path.is_file():
        return path
    found = [str(p) for p in sorted(Path("recipes").rglob(path.name))]
    found += [str(p) for p in [Path("reports") / path.stem / "recipe.yaml"] if p.is_file()]
    for staged in sorted(Path("recipes").rglob("*.yaml")):
        stages = (yaml.safe_load(staged.read_text()) or {}).get("stages") or []
        found += [f"{staged} --stage {n} --stop-stage {n}" for n, stage in enumerate(stages, 1)
                  if stage.get("study") == path.stem]
    if found:
        raise UserError(f"recipe {path} not found; a recipe of that name is now {' or '.join(found)}")
    raise UserError(f"recipe {path} not found (the recipes are in recipes/models/, recipes/studies/ and "
                    "recipes/streaming/)")
