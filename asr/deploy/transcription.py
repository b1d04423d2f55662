"""From audio files to transcripts, whatever runs the network: the PyTorch model (asr/deploy/inference.py) or
onnxruntime (asr/deploy/onnx_recognizer.py, no torch). Each file is read; a long one is cut at pauses
(asr/decode/segment.py); every piece of every file is scored in one batched call; each piece is decoded and a
file's pieces joined in order, word times counted from the start of the file."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Optional

from asr.data.audio import AudioError
from asr.decode.decoders import Transcript
from asr.base.progress import progress
from asr.decode.segment import speech_segments

MIN_SECONDS = 0.1  # shorter files are refused with a message: no word fits


def transcribe_files(paths: list[str | Path], read: Callable, log_probs: Callable, decoder, frame_seconds: float,
                 sample_rate: int, min_samples: int, batch_size: int = 16,
                 max_segment_seconds: float = 15.0) -> list[tuple[Path, Optional[Transcript], Optional[str]]]:
    """(path, transcript, None) or (path, None, reason) per file, in the order given. read(path): the waveform
    at sample_rate (AudioError for a file that cannot be used); log_probs(pieces, batch_size): each piece's
    per-frame log-probabilities."""
    results: list = []
    pieces, owners, offsets = [], [], []
    for index, path in enumerate(progress(paths, len(paths), "reading audio", "files", minimum=50)):
        try:
            waveform = read(path)
        except AudioError as e:
            results.append((Path(path), None, str(e)))
            continue
        results.append((Path(path), Transcript(""), None))
        for a, b in speech_segments(waveform, sample_rate, max_seconds=max_segment_seconds):
            if b - a >= min_samples:
                pieces.append(waveform[a:b])
                owners.append(index)
                offsets.append(a / sample_rate)
    scored = zip(log_probs(pieces, batch_size), owners, offsets)
    for piece_log_probs, owner, offset in progress(scored, len(pieces), "decoding", "pieces", minimum=50):
        piece = decoder(piece_log_probs, frame_seconds, offset)
        whole = results[owner][1]
        whole.words += piece.words
        whole.text = " ".join(t for t in (whole.text, piece.text) if t)
    return results


def length_batches(items: list, batch_size: int) -> Iterator[list[int]]:
    """Indices of `items` in batches of similar length (little padding for the network), reporting progress."""
    order = sorted(range(len(items)), key=lambda i: len(items[i]))
    starts = range(0, len(order), batch_size)
    for start in progress(starts, len(starts), "network", "batches", minimum=4):
        yield order[start : start + batch_size]


def decoder_from_args(args, vocabulary):
    from asr.decode.decoders import make_decoder

    return make_decoder(vocabulary, args.decoder, beam_size=args.beam_size, lexicon=args.lexicon, lm=args.lm,
                        lm_weight=args.lm_weight, word_score=args.word_score)


def recognizer_for(path: str, device: str = "cpu"):
    """A model file's recogniser: an exported .onnx through onnxruntime (asr/deploy/onnx_recognizer.py, no torch), any
    other file as a PyTorch checkpoint (asr/deploy/inference.py)."""
    if str(path).endswith(".onnx"):
        from asr.deploy.onnx_recognizer import OnnxRecognizer

        return OnnxRecognizer(path)
    from asr.deploy.inference import Recognizer

    return Recognizer.from_checkpoint(path, device)
