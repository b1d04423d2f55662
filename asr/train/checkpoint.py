"""Checkpoints: reading one safely, and exporting one to ship (averaged over several epochs if asked).

- Reading: `torch.load(weights_only=True)`: tensors and plain containers only, so a file can never run code.
  A file that is not a readable checkpoint gets a CheckpointError that says what it is.
- Export (`asr export RUN_CHECKPOINT OUT.ckpt`): a training checkpoint carries everything needed to resume
  (optimizer moments, scheduler, loops, RNG states, callbacks), about three times the size of the weights and
  nothing a recognizer needs. The exported file keeps the model's weights and the hyper-parameters that
  rebuild the model and its features. Given several checkpoints of one run (`asr export RUN/checkpoints/top
  OUT.ckpt`), it writes their average.

No Lightning here: transcription and evaluation read checkpoints too, and never import it.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch

from asr.base.errors import UserError
from asr.base.files import save_atomically, sha256

KEPT = ("epoch", "global_step", "pytorch-lightning_version", "hyper_parameters", "datamodule_hyper_parameters")
MACHINE_LOCAL = ("data_dir",)  # where the corpus lay on the training machine: meaningless elsewhere


class CheckpointError(UserError):
    pass


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint's contents, loaded so that it cannot run code; a CheckpointError naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes), not a checkpoint: was it copied or written completely?")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(4)
        if head[:2] == b"PK":  # a zip archive whose end (the central directory) is missing
            raise CheckpointError(f"{path} is truncated: a checkpoint whose end is missing (an interrupted copy or "
                                  "save?). Use an intact copy, or resume from last.ckpt.")
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (not the zip archive torch.save writes)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        what = f" (such as {found.group(1)})" if found else ""
        raise CheckpointError(f"refusing to load {path}: it holds Python objects beyond tensors and plain data{what}, "
                              "and loading it would run code") from None
    except Exception as e:  # noqa: BLE001
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path} is damaged: a zip archive torch cannot read ({reason})") from None


def read_training_checkpoint(path: str | Path) -> dict:
    """read_checkpoint, and refused unless it holds what rebuilds a model (weights and hyper-parameters)."""
    ckpt = read_checkpoint(path)
    if "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint written by `asr train` (no state_dict/hyper_parameters)")
    return ckpt


def acoustic_weights(ckpt: dict) -> dict:
    """The acoustic model's tensors of a checkpoint read above, named as AcousticModel names them (the training
    module keeps them under `model.`)."""
    return {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}


def averaged_weights(paths: list[Path]) -> dict:
    """The acoustic model's weights of `paths`, averaged tensor by tensor (in float64, cast back), and the first
    one's other contents. Refused unless every file rebuilds the same model: averaging only makes sense between
    epochs of one run, whose weights lie near one another."""
    first = read_training_checkpoint(paths[0])
    total = {k: v.double() for k, v in first["state_dict"].items() if k.startswith("model.")}
    for path in paths[1:]:
        ckpt = read_training_checkpoint(path)
        weights = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        if ckpt["hyper_parameters"] != first["hyper_parameters"] or weights.keys() != total.keys():
            raise UserError(f"{path} and {paths[0]} are not the same model (their hyper-parameters differ): only the "
                            "checkpoints of one run can be averaged, e.g. RUN/checkpoints/top/")
        for k, v in weights.items():
            total[k] += v.double()
    state = {k: (v / len(paths)).to(first["state_dict"][k].dtype) for k, v in total.items()}
    return {**first, "state_dict": state}


def checkpoints_named(sources: list[str | Path]) -> list[Path]:
    """The files among `sources`, a folder standing for the .ckpt files in it (e.g. RUN/checkpoints/top/)."""
    paths = []
    for source in map(Path, sources):
        found = sorted(source.glob("*.ckpt")) if source.is_dir() else [source]
        if not found:
            raise UserError(f"{source} holds no .ckpt files")
        paths += found
    return paths


def export_checkpoint(source: str | Path | list, target: str | Path, overwrite: bool = False) -> dict:
    """Writes the weights-only copy of `source` to `target` (atomically) and returns its size and sha256. Several
    sources (or a folder of them) are averaged (icefall's and ESPnet's checkpoint averaging): the mean of a run's
    dev-best epochs (RUN/checkpoints/top/) often recognises better than any one of them.
    An existing `target` is kept unless overwrite is set: a file a user made is never replaced silently."""
    sources, target = checkpoints_named(source if isinstance(source, list) else [source]), Path(target)
    if target.exists() and not overwrite:
        raise UserError(f"{target} exists; nothing was written. Pass --force to replace it, or choose another name.")
    ckpt = averaged_weights(sources)
    shipped = {key: ckpt[key] for key in KEPT if key in ckpt}
    # the acoustic model's tensors only (the training module holds nothing else that inference reads)
    shipped["state_dict"] = {k: v.clone() for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    shipped["datamodule_hyper_parameters"] = {k: v for k, v in ckpt.get("datamodule_hyper_parameters", {}).items()
                                              if k not in MACHINE_LOCAL}
    made_from = [{"file": path.name, "sha256": sha256(path)} for path in sources]
    shipped["exported_from"] = made_from[0] if len(made_from) == 1 else {"averaged": made_from}
    save_atomically(shipped, target)
    return {"file": str(target), "bytes": target.stat().st_size, "sha256": sha256(target),
            "source_bytes": sum(path.stat().st_size for path in sources), "averaged": len(sources)}
