"""`asr export RUN_CHECKPOINT OUT.ckpt`: a checkpoint to ship. A training checkpoint carries everything
needed to resume (optimizer moments, scheduler, loops, RNG states, callbacks): about three times the size
of the weights, and nothing a recognizer needs. The exported file keeps the model's weights and the
hyper-parameters that rebuild the model and its features, and loads with `torch.load(weights_only=True)`
like every checkpoint here (asr/inference.py: `Recognizer.from_checkpoint`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from .inference import CheckpointError, read_checkpoint

KEPT = ("epoch", "global_step", "pytorch-lightning_version", "hyper_parameters", "datamodule_hyper_parameters")
MACHINE_LOCAL = ("data_dir",)  # where the corpus lay on the training machine: meaningless elsewhere


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_checkpoint(source: str | Path, target: str | Path, overwrite: bool = False) -> dict:
    """Writes the weights-only copy of `source` to `target` (atomically) and returns its size and sha256.
    An existing `target` is kept unless overwrite is set: a file a user made is never replaced silently."""
    source, target = Path(source), Path(target)
    if target.exists() and not overwrite:
        raise ValueError(f"{target} exists; nothing was written. Pass --force to replace it, or choose another name.")
    ckpt = read_checkpoint(source)
    if "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"{source} is not a checkpoint written by `asr train` (no state_dict/hyper_parameters)")
    shipped = {key: ckpt[key] for key in KEPT if key in ckpt}
    # the acoustic model's tensors only (the training module holds nothing else that inference reads)
    shipped["state_dict"] = {k: v.clone() for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    shipped["datamodule_hyper_parameters"] = {k: v for k, v in ckpt.get("datamodule_hyper_parameters", {}).items()
                                              if k not in MACHINE_LOCAL}
    shipped["exported_from"] = {"file": source.name, "sha256": sha256(source)}
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    torch.save(shipped, partial)
    partial.replace(target)  # a reader sees the old file or the whole new one, never half of it
    return {"file": str(target), "bytes": target.stat().st_size, "sha256": sha256(target),
            "source_bytes": source.stat().st_size}


def command(args) -> int:
    info = export_checkpoint(args.checkpoint, args.output, overwrite=args.force)
    print(f"{info['file']}: {info['bytes'] / 1e6:.1f} MB (the training checkpoint: {info['source_bytes'] / 1e6:.1f} MB), "
          f"sha256 {info['sha256']}")
    return 0
