"""What live transcription does the same way through PyTorch (asr/deploy/streaming.py) and through onnxruntime
(asr/deploy/onnx_stream.py), in numpy alone: when a segment ends (the endpoint rules), how audio arrives (chunks), and
how the segments' transcripts make the recording's."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asr.decode.decoders import Transcript


@dataclass(frozen=True)
class Endpoint:
    """When a stream ends a segment, by sherpa-onnx's endpoint rules over the model's own output: blank frames at the
    segment's end count as silence. The segment ends after `after_words` seconds of silence that follow a word, after
    `before_words` seconds in which nothing was said, or at `longest` seconds. Then the recurrent state starts again
    from zero, as at the start of a training utterance: a model trained on utterances of seconds is never asked to
    carry its state over minutes."""
    after_words: float = 1.2
    before_words: float = 2.4
    longest: float = 20.0

    def reached(self, best: np.ndarray, frame_seconds: float) -> bool:
        """best: the segment's most likely symbol per frame so far (0 = blank)."""
        spoken = np.flatnonzero(best)
        silence = (len(best) - 1 - spoken[-1] if len(spoken) else len(best)) * frame_seconds
        return (silence >= (self.after_words if len(spoken) else self.before_words)
                or len(best) * frame_seconds >= self.longest)


def chunks(waveform: np.ndarray, sample_rate: int, chunk_ms: float):
    """The waveform cut into consecutive chunks of chunk_ms (the last one shorter), as a microphone delivers it."""
    size = max(1, round(sample_rate * chunk_ms / 1000))
    for start in range(0, len(waveform), size):
        yield waveform[start : start + size]


def joined(segments: list[Transcript]) -> Transcript:
    """The segments' words in order, as one transcript."""
    words = [w for part in segments for w in part.words]
    return Transcript(" ".join(w.word for w in words), words)
