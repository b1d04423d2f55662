"""`asr export`: a model to ship. To a .ckpt: the weights and what rebuilds the model, no optimizer state, averaged
over several checkpoints if given (asr/train/checkpoint.py); to a .onnx: the whole recogniser as one ONNX graph
(asr/deploy/export_onnx.py), its weights in 8 bits with --quantize int8 (asr/deploy/quantize.py)."""
from __future__ import annotations

from pathlib import Path

from asr.base.errors import UserError


def command(args) -> int:
    """`asr export CKPT [CKPT ...] OUT.ckpt|OUT.onnx [--force]`."""
    if str(args.output).endswith(".onnx"):
        from asr.deploy.export_onnx import export_onnx

        if len(args.checkpoint) > 1 or Path(args.checkpoint[0]).is_dir():
            raise UserError("an .onnx file is exported from one checkpoint: average into a .ckpt first "
                            "(`asr export RUN/checkpoints/top averaged.ckpt`), then export that")
        info = export_onnx(args.checkpoint[0], args.output, overwrite=args.force, quantize=args.quantize,
                           stream=args.stream)
        if args.stream:
            print(f"{info['file']}: {info['bytes'] / 1e6:.1f} MB ONNX{' int8' if args.quantize else ''} step graph "
                  f"(stream it with `asr transcribe --stream {info['file']} FILES`, no torch needed), sha256 "
                  f"{info['sha256']}")
            return 0
        print(f"{info['file']}: {info['bytes'] / 1e6:.1f} MB ONNX{' int8' if args.quantize else ''} (features and "
              f"acoustic model; transcribe it with "
              f"`asr transcribe {info['file']} FILES`, no torch needed), sha256 {info['sha256']}")
        return 0
    if args.quantize or args.stream:
        raise UserError(f"{'--quantize int8' if args.quantize else '--stream'} applies to an ONNX export: name an "
                        "OUT.onnx file")
    from asr.train.checkpoint import export_checkpoint

    info = export_checkpoint(list(args.checkpoint), args.output, overwrite=args.force)
    made = (f"the average of {info['averaged']} checkpoints" if info["averaged"] > 1 else
            f"the training checkpoint: {info['source_bytes'] / 1e6:.1f} MB")
    print(f"{info['file']}: {info['bytes'] / 1e6:.1f} MB ({made}), sha256 {info['sha256']}")
    return 0
