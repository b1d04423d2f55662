"""`asr serve`: the comparison in a browser. Upload a recording or speak into the microphone; every loaded
model (tanh RNN, LSTM, GRU, ...) transcribes it side by side, and the page plots, for this very utterance,
how strongly each model's output at the last frame still depends on every earlier frame: the gradient
across time of asr/model/gradients.py, the seed's mechanism measured on your own voice.

The Live tab streams the microphone to the models that can transcribe live (unidirectional, features normalised causally:
asr/deploy/streaming.py): each one's partial transcript grows as you speak, with the time each chunk took; when you stop,
the final transcripts, the gradient across time of what you said, and the recording itself (what the models heard,
to replay with `asr transcribe --stream`).

Gradio does the page (upload, microphone, layout, a queue for concurrent requests). The server listens on
127.0.0.1 unless told otherwise; analytics are off and no share link is made: nothing leaves the machine.
No Lightning is imported: the models come from their checkpoints through asr/deploy/inference.py. Exported models
serve too, through onnxruntime and without torch (`asr serve checkpoints/an4_lstm_stream.step.onnx`): a step graph
(`asr export --stream`) on both tabs, a whole-recording graph on the Recording tab; the gradient charts, which
differentiate the network, are drawn for checkpoints only.
"""
from __future__ import annotations

import contextlib
import html
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from asr.base.errors import UserError

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported anywhere

MAX_SECONDS = 60.0  # longer recordings belong to `asr transcribe`, which cuts them at pauses
MAX_UPLOAD = "30mb"  # a minute of 48 kHz stereo float WAV is 23 MB; bigger uploads are refused by the server
GRADIENT_FRAMES = 200  # the gradient across time is measured over the last this-many frames of the speech
MAX_LIVE_STREAMS = 8  # live recordings served at once: each holds a stream (a model state) per streaming model
LIVE_IDLE_SECONDS = 30.0  # a live recording that sent nothing for this long was abandoned (a closed tab)
LIVE_CHUNK_SECONDS = 0.1  # how often the page sends microphone audio: what Gradio's recorder makes (each 100 ms)
RETURN_FREED_EVERY_SECONDS = 2.0  # how often the server hands freed heap memory back to the system (below)
KERNEL_CACHE_ENTRIES = 64  # oneDNN kernels the server keeps, one per input shape (below)
SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints"


@dataclass
class LoadedModel:
    """A model on the page, and what the page asks of it, whichever way it runs: a checkpoint through PyTorch
    (asr/deploy/inference.py), or an exported file through onnxruntime, a whole-recording graph
    (asr/deploy/onnx_recognizer.py) or a streaming model's step graph (asr/deploy/onnx_stream.py)."""
    name: str
    path: Path
    recognizer: object  # Recognizer, OnnxRecognizer or StepModel

    @property
    def torch(self) -> bool:
        return hasattr(self.recognizer, "extractor")

    @property
    def sample_rate(self) -> int:
        return self.recognizer.extractor.config.sample_rate if self.torch else self.recognizer.sample_rate

    @property
    def frame_ms(self) -> float:
        return 1000 * self.recognizer.frame_seconds

    def can_stream(self) -> bool:
        if self.torch:
            from asr.deploy.streaming import streamable

            return streamable(self.recognizer)
        return hasattr(self.recognizer, "step")  # a step graph; a whole-recording graph cannot stream

    def stream(self, rate: int):
        """A stream of audio at `rate`, cut at its pauses (asr/deploy/live.py's Endpoint)."""
        from asr.deploy.live import Endpoint

        if self.torch:
            from asr.deploy.streaming import Stream

            return Stream(self.recognizer, rate, Endpoint())
        from asr.deploy.onnx_stream import OnnxStream

        return OnnxStream(self.recognizer, Endpoint(), rate)

    def transcribe(self, path: str):
        """(transcript, None) or (None, what is wrong with the file)."""
        if hasattr(self.recognizer, "transcribe_files"):
            ((_, transcript, error),) = self.recognizer.transcribe_files([path])
            return transcript, error
        from asr.deploy.onnx_stream import stream_file  # a step graph: the file streamed as one segment

        try:
            return stream_file(self.recognizer, path, 1000 * LIVE_CHUNK_SECONDS), None
        except ValueError as e:  # AudioError: what is wrong with the file
            return None, str(e)


def default_checkpoints() -> list[Path]:
    """The shipped AN4 models (checkpoints/an4_*.ckpt); else the newest `make demo` run's dev-selected models.
    (The shipped FSDD model knows ten digits at 8 kHz: it joins only when named.)"""
    shipped = sorted(SHIPPED.glob("an4_*.ckpt"))
    if shipped:
        return shipped
    demos = sorted(Path("runs").glob("an4_quick-*"), key=lambda p: p.stat().st_mtime)
    return sorted(demos[-1].glob("*/seed0/checkpoints/best.ckpt")) if demos else []


def model_name(path: Path) -> str:
    """'lstm' for runs/.../lstm/seed0/checkpoints/best.ckpt, the file name for a shipped one."""
    if path.parent.name == "checkpoints" and path.parent.parent.name.startswith("seed"):
        return path.parent.parent.parent.name
    return path.name.removesuffix(".onnx") if path.suffix == ".onnx" else path.stem


def load_model(path: Path):
    """A checkpoint's Recognizer, or for a .onnx file its OnnxRecognizer or (a step graph) its StepModel."""
    if path.suffix != ".onnx":
        from asr.deploy.inference import Recognizer

        return Recognizer.from_checkpoint(path)
    from asr.deploy.onnx_recognizer import OnnxRecognizer, onnx_session
    from asr.deploy.onnx_stream import StepModel

    graph = onnx_session(path).get_modelmeta().custom_metadata_map.get("graph")
    return StepModel(path) if graph == "stream_step" else OnnxRecognizer(path)


def load_models(paths: list[Path]) -> list[LoadedModel]:
    models = []
    for path in map(Path, paths):
        name = model_name(path)
        if name in {m.name for m in models}:
            name = f"{name} ({path.parent})"
        models.append(LoadedModel(name, path, load_model(path)))
    return models


def check_recording(path: Optional[str]) -> float:
    """The seconds of audio in an uploaded or recorded file, or an AudioError / ValueError saying what is wrong."""
    from asr.data.audio import read_audio
    from asr.decode.segment import window_energy_db

    if not path:
        raise UserError("no audio yet: upload a file or record one with the microphone, then press Transcribe")
    waveform, rate = read_audio(path, min_seconds=0.3)
    seconds = len(waveform) / rate
    if seconds > MAX_SECONDS:
        raise UserError(f"too long for this page: {seconds:.0f} s of audio, at most {MAX_SECONDS:.0f} s here "
                         f"(`asr transcribe CKPT {Path(path).name}` takes recordings of any length)")
    energy = window_energy_db(waveform, rate)
    if float(energy.max()) < -60 or float(energy.max() - energy.min()) < 6:
        raise UserError("no speech found: the recording is silent (or one steady sound). Check the microphone "
                         "level, or upload another file")
    return seconds


def gradient_curve(model: LoadedModel, waveform) -> list[float]:
    """||d output_T / d input_t|| relative to k = 0, over the last GRADIENT_FRAMES frames of the utterance."""
    from asr.model.gradients import model_gradient_flow

    features = model.recognizer.extractor(waveform)[-GRADIENT_FRAMES:]
    curve = model_gradient_flow(model.recognizer.model, features[None].to(model.recognizer.device)).cpu()
    return (curve / curve[0]).tolist()


def gradient_figure(curves: dict[str, list[float]], frame_ms: float):
    from matplotlib.figure import Figure  # not pyplot: it keeps every figure it opens, and is not thread-safe

    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(7, 3.8))
    ax = fig.subplots()
    for i, (name, curve) in enumerate(curves.items()):
        ax.plot(curve, lw=1.6, color=f"C{i}", label=name)
    ax.set_yscale("log")
    # plain tick labels (1e-06): log axes write theirs as mathtext, whose one parser is shared by every thread and
    # not thread-safe, and the page draws figures from several threads at once
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:.0e}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _: ""))
    ax.set_xlabel(f"frames back from the last frame ({frame_ms:g} ms each)")
    ax.set_ylabel("‖∂ output_T / ∂ input_t‖, relative to k = 0")
    ax.set_title("Your utterance: how far back each model's last output still reaches")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def results_table(rows: list[dict], reference: str) -> str:
    """One row per model: transcript, WER against the typed text, decode time, words with times."""
    head = "<th>model</th><th>transcript</th>" + ("<th>WER %</th>" if reference else "") + \
           "<th>decode ms</th><th>words (start-end s, confidence)</th>"
    body = []
    for r in rows:
        words = ", ".join(f"{html.escape(w.word)} ({w.start:.2f}-{w.end:.2f}, {w.confidence:.2f})" for w in r["words"])
        wer = f"<td class='wer'>{r['wer']:.1f}</td>" if reference else ""
        body.append(f"<tr data-model='{html.escape(r['name'])}'><td class='model'>{html.escape(r['name'])}</td>"
                    f"<td class='transcript'>{html.escape(r['text'])}</td>{wer}"
                    f"<td class='ms'>{r['ms']:.0f}</td><td class='words'>{words}</td></tr>")
    return f"<table id='results-table'><tr>{head}</tr>{''.join(body)}</table>"


def returning_freed_memory(every: float = RETURN_FREED_EVERY_SECONDS,
                           stop: Optional[threading.Event] = None) -> Optional[threading.Thread]:
    """Starts a thread that hands the heap memory the server has freed back to the system every `every` seconds
    (glibc's `malloc_trim(0)`); None where the C library is not glibc. glibc keeps freed blocks for reuse and returns
    only what lies at the top of a heap, while a request's tensors, arrays and Gradio's buffers are freed between
    blocks still in use: without it the server stood 19-26 % above its warm-up after 500 requests
    (benchmarks/serve_soak.py). Off the request path, on a clock: a trim walks every arena under its lock (50 ms at
    most in the soak beside two training jobs, 200 ms with more beside them), which no request should wait for, and
    a request-driven trim would run 8 at a time. It runs until `stop` is set (the server's: until the process ends)."""
    import ctypes
    import ctypes.util

    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None

    stop = stop or threading.Event()

    def keep_returning():
        while not stop.wait(every):
            trim(0)

    thread = threading.Thread(target=keep_returning, name="return-freed-memory", daemon=True)
    thread.start()
    return thread


def bounded_kernel_cache(entries: int = KERNEL_CACHE_ENTRIES) -> None:
    """Keeps at most `entries` of the kernels oneDNN (PyTorch's CPU LSTM) builds, one per input shape, where it keeps
    1,024 by default: every recording of a new length adds one per layer, about 0.8 MB a length for the shipped LSTM
    (82 MB over 104 lengths, tests/test_serve.py), so a server that hears recordings of every length grew until the
    1,024th. The live streams' kernels (one chunk shape) stay in use and so stay cached; a recording's are rebuilt,
    which costs it nothing measurable, since a new length missed the cache anyway. Read by oneDNN when it builds its
    first kernel: call before any model runs. A user's own ONEDNN_PRIMITIVE_CACHE_CAPACITY wins."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(entries))


def transcribe_all(models: list[LoadedModel], path: Optional[str], typed: str):
    """The page's one action: (status, results table, gradient figure; None without a checkpoint among the models)."""
    from asr.decode.metrics import error_rates
    from asr.data.text import normalize_transcript

    try:
        seconds = check_recording(path)
    except ValueError as e:  # AudioError is a ValueError: one clear line, and the server keeps serving
        return f"**error:** {e}", "", None
    reference = normalize_transcript(typed or "")
    rows, curves, at_rate = [], {}, {}
    for model in models:
        start = time.perf_counter()
        transcript, error = model.transcribe(path)
        if error:
            return f"**error:** {error}", "", None
        ms = 1000 * (time.perf_counter() - start)
        wer = error_rates([reference], [transcript.text])["wer"] if reference else None
        rows.append({"name": model.name, "text": transcript.text, "words": transcript.words, "ms": ms, "wer": wer})
        if model.torch:  # each model hears the recording at its own rate
            from asr.data.audio import load_audio

            if model.sample_rate not in at_rate:
                at_rate[model.sample_rate] = load_audio(path, model.sample_rate)
            curves[model.name] = gradient_curve(model, at_rate[model.sample_rate])
    status = f"{seconds:.1f} s of audio, {len(models)} model(s)" + (f"; reference: {reference}" if reference else "")
    figure = gradient_figure(curves, models[0].frame_ms) if curves else None
    return status, results_table(rows, reference), figure


@dataclass
class LiveSession:
    """One recording on the Live tab: a stream per model, what each has said so far, each chunk's latency, and
    the audio as it came (16-bit samples at the browser's rate)."""
    rate: int
    streams: dict
    texts: dict = field(default_factory=dict)
    latencies: dict = field(default_factory=dict)  # model -> seconds per chunk
    audio: list = field(default_factory=list)
    finished: bool = False
    key: str = field(default_factory=lambda: uuid.uuid4().hex)


class LiveStreams:
    """The live recordings open now, by key, with when each last sent a chunk. Chunks of different recordings
    arrive on different threads (the Live tab's events run concurrently)."""

    def __init__(self):
        self.seen: dict[str, float] = {}
        self.lock = threading.Lock()

    def admit(self, key: str) -> bool:
        """Opens recording `key` unless MAX_LIVE_STREAMS are open (abandoned ones no longer count)."""
        with self.lock:
            now = time.monotonic()
            self.seen = {k: t for k, t in self.seen.items() if now - t <= LIVE_IDLE_SECONDS}
            if key not in self.seen and len(self.seen) >= MAX_LIVE_STREAMS:
                return False
            self.seen[key] = now
            return True

    def close(self, key: str) -> None:
        with self.lock:
            self.seen.pop(key, None)


LIVE_STREAMS = LiveStreams()


def live_models(models: list[LoadedModel]) -> list[LoadedModel]:
    """The loaded models that can transcribe live (asr/deploy/streaming.py, asr/deploy/onnx_stream.py)."""
    return [m for m in models if m.can_stream()]


def live_table(session: Optional[LiveSession], final: bool = False) -> str:
    """One row per streaming model: its transcript so far (or final), and the per-chunk latency."""
    if session is None:
        return ""
    import numpy as np

    chunk_ms = 1000 * sum(len(a) for a in session.audio) / session.rate / max(1, len(session.audio))
    rows = []
    for name in session.streams:
        ms = 1000 * np.array(session.latencies[name] or [0.0])
        rows.append(f"<tr data-model='{html.escape(name)}'><td class='model'>{html.escape(name)}</td>"
                    f"<td class='transcript'>{html.escape(session.texts.get(name, ''))}</td>"
                    f"<td class='latency'>{np.percentile(ms, 50):.1f} / {np.percentile(ms, 95):.1f}</td></tr>")
    state = "final" if final else "so far"
    head = (f"<tr><th>model</th><th>transcript ({state})</th><th>ms per {chunk_ms:.0f} ms chunk (median / p95)"
            "</th></tr>")
    return f"<table id='live-table' data-state='{state}'>{head}{''.join(rows)}</table>"


def live_chunk(models: list[LoadedModel], path: Optional[str], session: Optional[LiveSession]):
    """A chunk of microphone audio (a WAV file from the page) -> (live table, session)."""
    import numpy as np

    from asr.data.audio import read_audio

    if not path or (session is not None and session.finished):
        return live_table(session), session
    try:
        data, rate = read_audio(path)  # float, mono, at the browser's rate
    except ValueError:  # an empty chunk (AudioError): nothing to hear
        return live_table(session), session
    if session is None or session.rate != rate:
        if session is not None:
            LIVE_STREAMS.close(session.key)
        session = LiveSession(rate, {}, latencies={m.name: [] for m in models})
        if not LIVE_STREAMS.admit(session.key):
            return (f"<p id='live-busy'>The page is transcribing {MAX_LIVE_STREAMS} live recordings, the most it "
                    "takes at once: try again in a moment.</p>"), None
        session.streams = {m.name: m.stream(rate) for m in models}  # a segment per pause
    elif not LIVE_STREAMS.admit(session.key):  # idle so long that its place went to another recording
        return "<p id='live-busy'>This recording was idle too long and was closed: record again.</p>", None
    # as 16-bit samples, what the recording keeps: the models hear exactly what the WAV file will hold
    pcm = np.round(data * 32768).clip(-32768, 32767).astype(np.int16)
    session.audio.append(pcm)
    samples = pcm.astype(np.float32) / 32768
    for model in models:
        start = time.perf_counter()
        session.texts[model.name] = session.streams[model.name].accept(samples).text
        session.latencies[model.name].append(time.perf_counter() - start)
    return live_table(session), session


def live_finish(models: list[LoadedModel], session: Optional[LiveSession]):
    """Recording stopped -> (status, final table, gradient figure, the recording as a WAV file, session)."""
    import tempfile

    import numpy as np
    import soundfile

    if session is None or not session.audio:
        return "**error:** no audio arrived from the microphone", "", None, None, session
    session.finished = True
    LIVE_STREAMS.close(session.key)
    for model in models:
        session.texts[model.name] = session.streams[model.name].finish().text
    audio = np.concatenate(session.audio)
    # in Gradio's own cache, which serves it from there and deletes it with the rest (build_app's delete_cache)
    from gradio.utils import get_upload_folder

    Path(get_upload_folder()).mkdir(parents=True, exist_ok=True)
    handle, recording = tempfile.mkstemp(prefix="asr-live-", suffix=".wav", dir=get_upload_folder())
    os.close(handle)
    soundfile.write(recording, audio, session.rate, subtype="PCM_16")
    seconds = len(audio) / session.rate
    curves, figure = {}, None
    charted = [m for m in models if m.torch]  # the chart differentiates the network: checkpoints only
    if charted:
        import torch
        import torchaudio

        waveform = torch.from_numpy(audio.astype(np.float32) / 32768)
    for model in charted:
        rate = model.sample_rate
        at_rate = torchaudio.functional.resample(waveform, session.rate, rate) if rate != session.rate else waveform
        if at_rate.numel() >= model.recognizer.extractor.min_samples():
            curves[model.name] = gradient_curve(model, at_rate)
    if curves:
        figure = gradient_figure(curves, models[0].frame_ms)
    status = f"{seconds:.1f} s of audio streamed in {len(session.audio)} chunks, {len(models)} model(s)"
    return status, live_table(session, final=True), figure, recording, session


def study_panel(reports: Path) -> tuple[str, Optional[str]]:
    """The study's table (markdown) and its gradient-across-time plot, the one report.md shows, from reports/<study>/.
    (Read from the report, not from asr/study/plots.py, which imports torch and Lightning.)"""
    import re

    report = reports / "report.md"
    if not report.is_file():
        return (f"(no study report in {reports}: pass --reports runs/an4_quick-<time>/report after `make demo`, or run "
                "scripts/cpu_study.sh)"), None
    text = report.read_text()
    tables, previous = [], ""
    for line in text.splitlines():  # the report's tables, each kept apart
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append("")
            tables.append(line)
        previous = line
    title = f"### The study on AN4 test (`{reports}/report.md`)"
    shown = re.search(r"!\[gradient flow\]\(([^)]+)\)", text)
    plot = reports / shown[1] if shown else None
    return "\n".join([title, *tables]), str(plot) if plot and plot.is_file() else None


# The models learned from unprocessed close-talking recordings: the page asks the browser for the microphone's own
# signal, without its voice processing (automatic gain, noise suppression, echo cancellation), which Gradio's
# recorder would otherwise get (getUserMedia's defaults) and which changes what the models hear.
RAW_MICROPHONE = """<script>
(() => {
  const devices = navigator.mediaDevices;
  if (!devices || !devices.getUserMedia) return;
  const original = devices.getUserMedia.bind(devices);
  const raw = {echoCancellation: false, noiseSuppression: false, autoGainControl: false};
  devices.getUserMedia = (constraints) => original(constraints && constraints.audio
    ? {...constraints, audio: {...(constraints.audio === true ? {} : constraints.audio), ...raw}} : constraints);
})();
</script>"""


def build_app(models: list[LoadedModel], reports: Path):
    import gradio as gr

    study_table, study_plot = study_panel(reports)
    # delete_cache: what the page wrote for its visitors (the Live tab's recordings, Gradio's copies of uploads and
    # plots) is deleted an hour after it was made, and all of it when the server stops
    with gr.Blocks(title="Vanishing gradients on your own voice", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as app:
        gr.Markdown("# tanh RNN vs LSTM vs GRU on your own voice")
        with gr.Tab("Recording", elem_id="recording-tab"):
            gr.Markdown("Upload a recording or use the microphone; optionally type what you said to get each model's "
                        "word error rate. Models: " + ", ".join(f"**{m.name}**" for m in models))
            with gr.Row():
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="speech",
                                 elem_id="audio-input")
                with gr.Column():
                    typed = gr.Textbox(label="what was said (optional)", elem_id="reference-text")
                    button = gr.Button("Transcribe", variant="primary", elem_id="transcribe-button")
            status = gr.Markdown(elem_id="status")
            results = gr.HTML(elem_id="results")
            plot = gr.Plot(label="gradient across time for this utterance", elem_id="gradient-plot")
        live_tab(live_models(models))
        with gr.Accordion("The study these models come from", open=True):
            gr.Markdown(study_table)
            if study_plot:
                gr.Image(study_plot, label="gradient across time in the study (dev utterances)", interactive=False)
        # one request at a time, the rest queue; also the page's API, /transcribe (gradio_client: see the README)
        button.click(lambda path, text: transcribe_all(models, path, text), inputs=[audio, typed],
                     outputs=[status, results, plot], concurrency_limit=1, api_name="transcribe")
    return app.queue(default_concurrency_limit=1)


def live_tab(models: list[LoadedModel]) -> None:
    """The Live tab: microphone audio streamed to every model that can transcribe live."""
    import gradio as gr

    with gr.Tab("Live", elem_id="live-tab"):
        if not models:
            gr.Markdown("No loaded model can transcribe live: that needs a unidirectional model with online or globally "
                        "normalised features, e.g. `asr serve checkpoints/an4_lstm_stream.ckpt "
                        "checkpoints/an4_tanh_rnn_clipped_stream.ckpt`, or its step graph, "
                        "`asr serve checkpoints/an4_lstm_stream.step.onnx`.")
            return
        gr.Markdown("Press record and speak: each model's transcript grows as you talk, a chunk of audio at a "
                    "time (the table gives each chunk's length and how long each model took for it). Stop to see "
                    "the final transcripts and how far back in your utterance each model's last output still "
                    "reaches. Models: "
                    + ", ".join(f"**{m.name}**" for m in models))
        microphone = gr.Audio(sources=["microphone"], streaming=True, type="filepath", label="microphone",
                              elem_id="live-audio")
        session = gr.State(None)
        status = gr.Markdown(elem_id="live-status")
        table = gr.HTML(elem_id="live-results")
        plot = gr.Plot(label="gradient across time for this utterance", elem_id="live-gradient-plot")
        recording = gr.File(label="what the models heard (WAV: `asr transcribe --stream CKPT recording.wav` gives "
                            "the same final transcripts)", elem_id="live-recording")
        microphone.start_recording(lambda: ("", "", None, None, None), outputs=[status, table, plot, recording, session])
        microphone.stream(lambda path, s: live_chunk(models, path, s), inputs=[microphone, session],
                          outputs=[table, session], stream_every=LIVE_CHUNK_SECONDS, time_limit=MAX_SECONDS,
                          concurrency_limit=None)
        microphone.stop_recording(lambda s: live_finish(models, s), inputs=[session],
                                  outputs=[status, table, plot, recording, session])


@contextlib.contextmanager
def served(checkpoints: list, log: Path, env: Optional[dict] = None, timeout: float = 120.0):
    """`asr serve CHECKPOINTS` started on a free loopback port for a program (a test, a benchmark, the screenshot
    script), what it prints going to `log`: yields (url, process) once the page answers, stops it afterwards."""
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    asr = Path(sys.executable).with_name("asr")
    with open(log, "w") as out:
        process = subprocess.Popen([str(asr), "serve", *map(str, checkpoints), "--port", str(port)], stdout=out,
                                   stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    url, deadline = f"http://127.0.0.1:{port}/", time.time() + timeout
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"asr serve did not come up on {url}:\n{Path(log).read_text()[-3000:]}")
                time.sleep(0.5)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def command(args) -> int:
    """`asr serve [CKPT ...] [--host H --port N]`."""
    paths = [Path(p) for p in args.checkpoints] or default_checkpoints()
    if not paths:
        raise UserError("no checkpoints given, none shipped in checkpoints/ and no `make demo` run under runs/: "
                         "pass checkpoint paths, e.g. `asr serve runs/NAME/checkpoints/best.ckpt`")
    bounded_kernel_cache()
    models = load_models(paths)
    from asr.data.audio import fallback_decoder

    fallback_decoder()  # loaded now, not at the first upload soundfile cannot read (170 MB more from that call on)
    returning_freed_memory()
    app = build_app(models, Path(args.reports))
    print(f"serving {', '.join(m.name for m in models)} on http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
    app.launch(server_name=args.host, server_port=args.port, share=False, show_error=True, quiet=True,
               inbrowser=False, max_file_size=MAX_UPLOAD, head=RAW_MICROPHONE)
    return 0
