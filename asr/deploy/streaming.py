"""Live transcription: audio in chunks as it arrives, a partial transcript after each chunk.

A model can stream when it looks only backwards in time (a unidirectional recurrence, `AcousticModel.can_stream`)
and its features are normalised from the frames so far (data.normalize: online or global, asr/data/features.py).
Then every stage of the offline pipeline runs on what has arrived so far, each output computed once, as soon as
its last input is in:

    samples -> a 25 ms window every 10 ms -> log-mel, normalised (running mean / training statistics) -> stacked frames
    -> the recurrence, its state carried from chunk to chunk -> (lookahead) -> log-probs -> greedy CTC

So the stream of one utterance ends with the offline log-probs (up to rounding) and the offline transcript:
tests/test_streaming.py checks this on every AN4 test file, at several chunk sizes. A long recording is cut into
segments at its pauses (endpoint rules, asr/deploy/live.py), each run from a zero state. A chunk's partial transcript is ready when its frames
have run through the network (benchmarks/streaming.py measures how long that takes); a model with a lookahead
(asr/model/acoustic.py) holds its last `lookahead` frames back until the frames after them arrive, or the stream ends.
"""
from __future__ import annotations

import numpy as np
import torch

from asr.decode.decoders import GreedyDecoder, Transcript
from asr.data.audio import StreamingResampler
from asr.deploy.live import Endpoint, chunks, joined
from asr.base.errors import UserError


def streamable(recognizer) -> bool:
    """Whether a model can transcribe live: a unidirectional recurrence over features normalised online or globally."""
    return recognizer.model.can_stream() and recognizer.extractor.config.uses_training_stats


class Stream:
    """One recording, fed in chunks: `accept(samples)` -> the transcript so far; `finish()` -> the final one.

    Samples are float waveform values at `sample_rate` (default: the model's; any other is resampled on the way,
    as `load_audio` resamples a file), in chunks of any size. With an `endpoint`, the recording is cut into segments
    at its pauses as it streams (`Endpoint`); the transcript is the segments' words in order, with their times in the
    recording. Without one, the whole recording is one segment, and the stream gives what offline transcription
    gives."""

    def __init__(self, recognizer, sample_rate: int | None = None, endpoint: Endpoint | None = None):
        model, extractor = recognizer.model, recognizer.extractor
        if not model.can_stream():
            raise UserError("this model cannot transcribe live: streaming needs a unidirectional rnn_tanh, rnn_relu, "
                            "lstm or gru model (it must not look at audio still to come); the shipped streaming "
                            "models are checkpoints/*_stream.ckpt")
        if not extractor.config.uses_training_stats:
            raise UserError("this model cannot transcribe live: its features are normalised over the whole "
                            "utterance (data.normalize: utterance); streaming needs data.normalize: online, online_level or global")
        self.model, self.extractor = model.eval(), extractor
        self.device = next(model.parameters()).device  # features are made on the CPU, the model may be elsewhere
        rate = extractor.config.sample_rate
        self.resampler = StreamingResampler(sample_rate, rate) if sample_rate and sample_rate != rate else None
        self.decoder = GreedyDecoder(recognizer.vocabulary)
        self.frame_seconds = recognizer.frame_seconds
        self.window, self.hop = extractor.mel.win_length, extractor.hop
        self.samples = torch.zeros(0)  # at the model's rate, from the start of the next window on
        self.log_mels = torch.zeros(0, extractor.config.n_mels)  # normalised, from the next stacked frame's first on
        self.skip = 0  # log-mel frames still to come that no stacked frame covers (stride > stack), dropped on arrival
        self.normalize = extractor.frame_normalizer()  # online normalisation carries its running mean on
        self.endpoint = endpoint
        self.state = None  # the recurrence's, after the current segment's frames so far
        self.log_probs: list[np.ndarray] = []  # every frame's, in order
        self.segment: list[np.ndarray] = []  # the current segment's
        self.segments: list[Transcript] = []  # the segments ended so far, their times in the recording
        self.segment_start = 0  # the current segment's first frame in the recording
        self.ended = False

    def accept(self, samples) -> Transcript:
        """Takes the next chunk of audio; returns the transcript of everything heard so far."""
        samples = np.asarray(samples, dtype=np.float32)
        self.run(torch.from_numpy(self.resampler(samples) if self.resampler is not None else samples))
        if self.endpoint is not None and self.segment:
            if self.endpoint.reached(np.concatenate(self.segment).argmax(-1), self.frame_seconds):
                self.end_segment()
        return self.transcript()

    def finish(self) -> Transcript:
        """The final transcript: the resampler's last samples run, the frames waiting for a lookahead decoded with
        nothing after them; samples after the last whole window are dropped, as offline."""
        if not self.ended:
            self.ended = True
            if self.resampler is not None:
                self.run(torch.from_numpy(self.resampler.finish()))
            self.end_segment()
        return self.transcript()

    @torch.no_grad()
    def end_segment(self) -> None:
        """The frames a lookahead holds back decoded with nothing after them, the segment's words kept, and the
        recurrent state (and an online normalisation's weight of evidence) started again."""
        held = self.model.finish(self.state)[0].cpu().numpy()
        self.log_probs.append(held)
        scores = np.concatenate([*self.segment, held])
        self.segments.append(self.decoder(scores, self.frame_seconds, self.segment_start * self.frame_seconds))
        self.segment_start += len(scores)
        self.state, self.segment = None, []
        self.normalize.restart()

    @torch.no_grad()
    def run(self, samples: torch.Tensor) -> None:
        """Samples at the model's rate through every stage, as far as they complete its outputs."""
        self.samples = torch.cat([self.samples, samples])
        windows = (len(self.samples) - self.window) // self.hop + 1 if len(self.samples) >= self.window else 0
        if windows > 0:
            used = self.samples[: (windows - 1) * self.hop + self.window]
            new = self.normalize(self.extractor.raw_log_mel(used))
            self.samples = self.samples[windows * self.hop :]
            dropped = min(self.skip, len(new))
            self.skip -= dropped
            self.log_mels = torch.cat([self.log_mels, new[dropped:]])
        if len(self.log_mels) >= self.extractor.config.stack:
            stacked = self.extractor.stack(self.log_mels)
            consumed = len(stacked) * self.extractor.config.stride  # the next stacked frame starts there
            self.skip = max(0, consumed - len(self.log_mels))
            self.log_mels = self.log_mels[consumed:]
            log_probs, self.state = self.model.step(stacked[None].to(self.device), self.state)
            self.log_probs.append(log_probs[0].cpu().numpy())
            self.segment.append(self.log_probs[-1])

    def transcript(self) -> Transcript:
        """The ended segments' words, then greedy CTC over every frame of the current one so far (a few hundred
        frames: decoding them again costs nothing next to the network, and merges repeats across chunk edges exactly
        as the offline decoder does)."""
        current = [self.decoder(np.concatenate(self.segment), self.frame_seconds,
                                self.segment_start * self.frame_seconds)] if self.segment else []
        return joined([*self.segments, *current])

    @property
    def frames(self) -> int:
        """Output frames computed so far."""
        return sum(len(p) for p in self.log_probs)


def stream_file(recognizer, path, chunk_ms: float, on_partial=None, realtime: bool = False,
                endpoint: Endpoint | None = None) -> tuple[Transcript, list[float]]:
    """A file transcribed as if it were live: read as offline transcription reads it, fed chunk by chunk
    (`realtime`: no faster than it would be spoken), cut at its pauses if given an `endpoint`; on_partial(transcript)
    after every chunk. Returns the final transcript and each chunk's latency, seconds from the chunk's arrival to its
    partial transcript."""
    import time

    from asr.data.audio import load_audio
    from asr.deploy.transcription import MIN_SECONDS

    if chunk_ms <= 0:
        raise UserError(f"--chunk-ms must be positive, got {chunk_ms}")
    rate = recognizer.extractor.config.sample_rate
    waveform = load_audio(path, rate, min_seconds=MIN_SECONDS).numpy()
    stream, latencies, start = Stream(recognizer, endpoint=endpoint), [], time.perf_counter()
    for index, chunk in enumerate(chunks(waveform, rate, chunk_ms)):
        if realtime:  # the chunk arrives when its last sample has been spoken
            time.sleep(max(0.0, start + (index * chunk_ms / 1000 + len(chunk) / rate) - time.perf_counter()))
        arrived = time.perf_counter()
        partial = stream.accept(chunk)
        latencies.append(time.perf_counter() - arrived)
        if on_partial is not None:
            on_partial(partial)
    return stream.finish(), latencies
