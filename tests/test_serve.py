"""`asr serve` in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright) uploads
real AN4 audio, waits for the transcripts and the gradient chart, and checks that the page says what
`asr transcribe` says; bad recordings get a message on the page and the server keeps serving; the Live tab
streams a (fake) microphone playing an AN4 recording and ends where `asr transcribe --stream` ends."""
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr.cli import main

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_temp(tmp_path_factory) -> Path:
    """The served page's temporary folder (TMPDIR), Gradio's cache inside it: what the page writes stays there."""
    return tmp_path_factory.mktemp("serve-tmp")


SERVED: dict = {}  # the server fixture's process
SOAK = Path(__file__).resolve().parents[1] / "benchmarks/serve_soak.py"
SHIPPED_LSTM = Path(__file__).resolve().parents[1] / "checkpoints/an4_lstm.ckpt"


@pytest.fixture(scope="module")
def server(overfit, checkpoint, server_temp):
    from asr.app.serve import served

    env = {"OMP_NUM_THREADS": "1", "TMPDIR": str(server_temp), "GRADIO_TEMP_DIR": str(server_temp / "gradio")}
    # what the server prints goes to server.log, for test_the_server_prints_no_warning
    with served([overfit.checkpoint, checkpoint], server_temp / "server.log", env) as (url, process):
        SERVED["process"] = process
        yield url


def test_the_server_prints_no_warning(server, server_temp):
    """Started, `asr serve` says where it serves and nothing else: no warning of Gradio's about how the page is
    built (Gradio 6 moved `head` from gr.Blocks to launch())."""
    printed = (server_temp / "server.log").read_text()
    assert "serving " in printed and "Warning" not in printed, printed


@pytest.fixture(scope="module")
def playwright():
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.fail("the browser test needs Debian's Chromium: `apt-get install chromium` (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:  # one per module: Playwright's sync API allows no second one inside it
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


def transcribe_on_the_page(browser, url, audio: Path, typed: str = "", wait_for_audio: bool = True):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    page.wait_for_selector("#transcribe-button")
    page.locator("#audio-input input[type=file]").set_input_files(str(audio))
    if wait_for_audio:  # the player appears once the upload is in
        page.wait_for_selector("#audio-input audio, #audio-input .waveform-container", state="attached", timeout=30000)
    else:
        page.wait_for_timeout(3000)
    if typed:
        page.fill("#reference-text textarea", typed)
    page.click("#transcribe-button")
    # done when the status line says how much audio was heard, or what was wrong (not Gradio's timer)
    page.wait_for_function("(document.querySelector('#status') || {}).innerText?.match(/^error:|s of audio/)",
                           timeout=120000)
    return page


def test_the_page_transcribes_like_the_command_line_and_plots_the_gradient(server, browser, overfit, capsys, tmp_path):
    utterance = overfit.utterances[2]
    assert main(["transcribe", str(overfit.checkpoint), str(utterance.path)]) == 0
    expected = capsys.readouterr().out.strip()
    assert expected  # the memorised words

    page = transcribe_on_the_page(browser, server, utterance.path, typed=utterance.text)
    page.wait_for_selector("#results-table", timeout=60000)
    assert page.inner_text("[data-model='overfit'] .transcript").strip() == expected
    assert float(page.inner_text("[data-model='overfit'] .wer")) < 50
    assert page.locator("#results-table tr[data-model]").count() == 2  # both models, side by side
    assert len(page.inner_text("[data-model='overfit'] .words").split("),")) >= 2  # words with times
    page.wait_for_selector("#gradient-plot img, #gradient-plot svg", timeout=60000)
    screenshot = Path(os.environ.get("ASR_SERVE_SCREENSHOT") or tmp_path / "serve.png")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000


def test_bad_recordings_get_a_message_and_the_server_keeps_serving(server, browser, overfit, tmp_path):
    silence = tmp_path / "silence.wav"
    soundfile.write(silence, np.zeros(16000 * 2), 16000)
    page = transcribe_on_the_page(browser, server, silence)
    assert page.inner_text("#status").startswith("error: no speech found")
    assert page.locator("#results-table").count() == 0

    ten_minutes = tmp_path / "long.wav"
    t = np.arange(16000 * 600) / 16000
    soundfile.write(ten_minutes, 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0), 16000)
    page = transcribe_on_the_page(browser, server, ten_minutes)
    assert page.inner_text("#status").startswith("error: too long for this page: 600 s of audio")

    not_audio = tmp_path / "notes.wav"
    not_audio.write_bytes(b"RIFF\x00\x00\x00\x00WAVEthese are not samples" * 8)
    page = transcribe_on_the_page(browser, server, not_audio, wait_for_audio=False)
    assert page.inner_text("#status").startswith("error: unreadable or corrupt audio (")

    page = transcribe_on_the_page(browser, server, overfit.utterances[0].path)  # and it still works
    page.wait_for_selector("#results-table", timeout=60000)


def test_an_an4_test_file_and_requests_at_once(server, browser, overfit, an4_test_wav, capsys):
    """A real AN4 test recording (unseen by the model) from two pages at the same time: both are answered
    (one waits in the queue), each with what `asr transcribe` says."""
    assert main(["transcribe", str(overfit.checkpoint), str(an4_test_wav)]) == 0
    expected = capsys.readouterr().out.strip()
    pages = []
    for _ in range(2):
        page = browser.new_page()
        page.goto(server)
        page.wait_for_selector("#transcribe-button")
        page.locator("#audio-input input[type=file]").set_input_files(str(an4_test_wav))
        page.wait_for_selector("#audio-input audio, #audio-input .waveform-container", state="attached", timeout=30000)
        pages.append(page)
    for page in pages:
        page.click("#transcribe-button")
    for page in pages:
        page.wait_for_selector("#results-table", timeout=120000)
        assert page.inner_text("[data-model='overfit'] .transcript").strip() == expected


def readme_client_example() -> str:
    readme = (Path(__file__).resolve().parents[1] / "docs/live.md").read_text()
    block = readme.split("<!-- gradio_client example -->", 1)[1]
    return block.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_client_example_gets_what_the_command_line_gets(server, overfit, checkpoint, capsys):
    """The gradio_client snippet of docs/live.md, run as written (the page's URL and an AN4 training file put in), against
    `asr transcribe` on the same file: the same transcript from every model, through the /transcribe endpoint."""
    wav = str(overfit.utterances[0].path)
    code = readme_client_example().replace("http://127.0.0.1:7860/", server).replace("an406-fcaw-b.wav", wav)
    capsys.readouterr()
    namespace: dict = {}
    exec(code, namespace)
    printed = capsys.readouterr().out
    assert f"\n{namespace['status']}\n" in printed and " model(s)" in namespace["status"]
    for ckpt in (overfit.checkpoint, checkpoint):
        assert main(["transcribe", str(ckpt), wav]) == 0
        expected = capsys.readouterr().out.strip()
        assert f"<td class='transcript'>{expected}</td>" in namespace["table"]


def test_an_upload_over_the_limit_is_refused_with_a_message(server, tmp_path):
    from gradio_client import Client, handle_file

    big = tmp_path / "big.wav"
    soundfile.write(big, np.zeros((31 * 2 ** 20 // 8, 2)), 48000, subtype="FLOAT")  # 31 MB of silence
    with pytest.raises(Exception) as refused:
        Client(server, verbose=False).predict(handle_file(str(big)), "", api_name="/transcribe")
    assert f"exceeds the maximum file size of {30 * 2 ** 20} bytes" in str(refused.value), str(refused.value)


def rss_mb(pid: int) -> float:
    """The process's resident memory, as benchmarks/serve_soak.py reads it (one reader for both)."""
    return soak_benchmark().rss_mb(pid)


@functools.cache
def soak_benchmark():
    """benchmarks/serve_soak.py as a module (it is a script, not part of the package), loaded once."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("serve_soak", SOAK)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    return soak


def recording_live(playwright, url: str, wav: Path, tries: int = 3):
    """A Chromium whose fake microphone plays `wav` in a loop, on the page's Live tab, recording: (browser, page).
    Under load Chromium's fake microphone sometimes delivers nothing at all (no chunk is ever uploaded; the soak,
    benchmarks/serve_soak.py, counts such recordings apart): then the page is loaded again and Record clicked again,
    `tries` times at most. A recording whose audio reached the server is never retried: what the server does with it
    is what the tests check."""
    microphone = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-audio-capture={wav}"]
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + microphone)
    page = chromium.new_page(viewport={"width": 1280, "height": 1000})
    uploads = []
    page.on("request", lambda request: uploads.append(request.url) if "/upload" in request.url else None)
    for _ in range(tries):
        page.goto(url)
        page.get_by_role("tab", name="Live").click()
        page.locator("#live-audio button", has_text="Record").first.click()
        deadline = time.time() + 20
        while not uploads and time.time() < deadline:
            page.wait_for_timeout(100)
        if uploads:
            break
    return chromium, page


def test_the_live_tab_streams_the_microphone_and_ends_where_the_command_line_ends(server, playwright, overfit, tmp_path,
                                                                                 capsys, server_temp):
    """Chromium's fake microphone plays an utterance the streaming model memorised: the partial transcript grows
    while it plays, and the final transcript is what `asr transcribe --stream` gives on the recording the page
    offers (the audio the models heard, as it arrived from the browser)."""
    import re

    utterance = overfit.utterances[2]
    chromium, page = recording_live(playwright, server, utterance.path)
    partials, deadline = [], time.time() + 60
    while len(partials) < 3 and time.time() < deadline:  # three different partial transcripts, then stop
        if page.locator("#live-table [data-model='overfit'] .transcript").count():
            text = page.inner_text("#live-table [data-model='overfit'] .transcript").strip()
            if text and text not in partials:
                partials.append(text)
        page.wait_for_timeout(100)
    page.wait_for_timeout(2500)  # the file plays in a loop: at least all of it once more
    page.locator("#live-audio button", has_text="Stop").first.click()
    page.wait_for_selector("#live-table[data-state='final']", timeout=60000)
    final = page.inner_text("#live-table [data-model='overfit'] .transcript").strip()
    median, p95 = map(float, re.findall(r"[\d.]+", page.inner_text("#live-table [data-model='overfit'] .latency")))
    assert 0 < median <= p95
    page.wait_for_selector("#live-gradient-plot img, #live-gradient-plot svg", timeout=60000)
    href = page.locator("#live-recording a").first.get_attribute("href")
    recording = tmp_path / "recording.wav"
    recording.write_bytes(urllib.request.urlopen(urllib.parse.urljoin(server, href), timeout=30).read())
    chromium.close()
    assert len(partials) == 3 and final
    assert main(["transcribe", "--stream", str(overfit.checkpoint), str(recording)]) == 0
    assert capsys.readouterr().out.strip() == final
    assert matched_share(recording, utterance.path) > 0.9  # the microphone's own signal, no voice processing
    # the recording lies in Gradio's cache, which deletes it (delete_cache), not in a folder of the page's own
    kept = [p.relative_to(server_temp).parts for p in server_temp.rglob("asr-live-*")]
    assert kept and all(parts[0] == "gradio" and len(parts) == 2 for parts in kept), kept


def matched_share(recording: Path, original: Path) -> float:
    """The share of the recording's non-silent 50 ms pieces found in the original file (played in a loop), with a
    normalised cross-correlation above 0.95: 1.0 when the page records the microphone's signal unaltered."""
    import torch
    import torchaudio
    from scipy.signal import correlate

    source, rate = soundfile.read(original)
    heard, heard_rate = soundfile.read(recording)
    heard = torchaudio.functional.resample(torch.from_numpy(heard), heard_rate, rate).numpy()
    looped, size = np.concatenate([source, source]), rate // 20
    energy = np.sqrt(np.convolve(looped ** 2, np.ones(size), mode="valid"))
    scores = []
    for start in range(0, len(heard) - size, size):
        piece = heard[start : start + size]
        if np.linalg.norm(piece) > 0.3:  # speech, not the pauses
            fit = correlate(looped, piece, mode="valid", method="fft") / (energy * np.linalg.norm(piece) + 1e-12)
            scores.append(fit.max() > 0.95)
    assert len(scores) >= 10
    return float(np.mean(scores))


def test_each_model_gets_the_recording_at_its_own_rate_and_no_figure_is_kept(an4_test_wav, monkeypatch):
    """The recording tab beside an 8 kHz model (the shipped digits LSTM) and a 16 kHz one: each model's gradient
    chart is measured on the recording at that model's rate (it was the first model's for all). And a request's
    figure is not kept by pyplot afterwards (pyplot keeps every figure it opens until closed: memory that grew with
    every request, in a registry that is not thread-safe under the queue)."""
    import matplotlib.pyplot as plt

    import asr.app.serve as serve
    from asr.data.audio import load_audio

    shipped = Path(__file__).resolve().parents[1] / "checkpoints"
    models = serve.load_models([shipped / "an4_lstm.ckpt", shipped / "fsdd_lstm.ckpt"])
    got, curve = {}, serve.gradient_curve

    def recorded(model, waveform):
        got[model.name] = waveform.numel()
        return curve(model, waveform)

    monkeypatch.setattr(serve, "gradient_curve", recorded)
    before = len(plt.get_fignums())
    for _ in range(3):
        status, table, figure = serve.transcribe_all(models, str(an4_test_wav), "")
        assert figure is not None and "2 model(s)" in status
    assert got == {m.name: load_audio(an4_test_wav, m.recognizer.extractor.config.sample_rate).numel() for m in models}
    assert len(plt.get_fignums()) == before


ANON_MB = """
def anon_mb():  # what the process allocated and holds (RssAnon), in MB
    return next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("RssAnon:")) / 1024
"""  # the subprocesses below read their own memory with it

FRAGMENTED_HEAP = ANON_MB + """
import json, time
import numpy as np
from asr.app.serve import returning_freed_memory

before = anon_mb()
# a request's work: many buffers under glibc's mmap threshold (from the heap), most freed, some kept between them
blocks = [np.ones(8000) for _ in range(12000)]  # 64 kB each, 770 MB
kept = blocks[::8]
del blocks
time.sleep(0.6)
freed = anon_mb()
started = returning_freed_memory(every=0.2) is not None
time.sleep(1.0)
print(json.dumps({"before": before, "freed": freed, "after": anon_mb(), "started": started}))
"""


def test_the_server_hands_the_memory_it_freed_back_to_the_system():
    """Heap blocks freed between blocks still in use stay the process's under glibc (the server stood 19-26 % above
    its warm-up after 500 requests, benchmarks/serve_soak.py) until something trims the heaps: the server's thread
    does, every few seconds. Here 7/8 of 770 MB of 64 kB blocks are freed: kept, until the thread runs."""
    done = subprocess.run([sys.executable, "-c", FRAGMENTED_HEAP], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    mb = json.loads(done.stdout.strip().splitlines()[-1])
    assert mb["started"]
    assert mb["freed"] - mb["before"] > 500, mb  # freed, but still the process's: the fragmentation is real
    assert mb["after"] - mb["before"] < 200, mb  # the 96 MB still in use and little more


KERNELS_OF_MANY_LENGTHS = ANON_MB + """
import ctypes, json, sys
import torch
from asr.app.serve import bounded_kernel_cache
from asr.deploy.inference import Recognizer

if sys.argv[2] == "bounded":
    bounded_kernel_cache()
torch.set_num_threads(1)
trim = ctypes.CDLL("libc.so.6").malloc_trim

recognizer = Recognizer.from_checkpoint(sys.argv[1])
features = torch.randn(400, recognizer.extractor(torch.zeros(16000)).shape[1])  # frames of features
for n in range(120):  # recordings of 120 lengths, a stacked frame apart
    recognizer.log_probs([features[: 50 + 3 * n]])
    if n == 15:
        trim(0)  # what is left is held, not freed blocks waiting for a trim
        warm = anon_mb()
trim(0)
print(json.dumps({"warm": warm, "after": anon_mb()}))
"""


def test_the_server_keeps_a_bounded_number_of_kernels_whatever_the_recordings_lengths():
    """oneDNN builds the LSTM a kernel per input shape and keeps 1,024 of them: a process that hears recordings of
    every length grows with each new one (the shipped LSTM: 0.8 MB a length). `asr serve` bounds that cache."""
    grew = {}
    for mode in ("default", "bounded"):
        done = subprocess.run([sys.executable, "-c", KERNELS_OF_MANY_LENGTHS, str(SHIPPED_LSTM), mode],
                              capture_output=True, text=True, timeout=300,
                              env={k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"})
        assert done.returncode == 0, done.stderr[-3000:]
        mb = json.loads(done.stdout.strip().splitlines()[-1])
        grew[mode] = mb["after"] - mb["warm"]
    assert grew["default"] > 40, grew  # 104 lengths more: the growth is real without the bound
    assert grew["bounded"] < 15, grew


def test_asr_serve_bounds_the_kernel_cache_and_starts_returning_freed_memory(monkeypatch, overfit):
    """`asr serve` bounds oneDNN's kernel cache and starts the trimming thread before it serves (the path a user
    takes, up to the page's launch)."""
    import threading

    from asr.app import serve

    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "")  # recorded as it was, and so restored at the end,
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY")  # also when `asr serve` sets it
    launched, started, stop = [], [], threading.Event()
    returning = serve.returning_freed_memory

    class Page:
        def launch(self, **kwargs):
            launched.append(kwargs)

    monkeypatch.setattr(serve, "build_app", lambda models, reports: Page())
    # the same thread, stopped when the test ends (trimming this test process's heap under the rest of the suite
    # would cost every later allocation its page faults)
    monkeypatch.setattr(serve, "returning_freed_memory", lambda: started.append(returning(stop=stop)) or started[-1])
    try:
        assert main(["serve", str(overfit.checkpoint), "--port", "1"]) == 0
        assert launched and started and started[0].is_alive() and started[0].name == "return-freed-memory"
        assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(serve.KERNEL_CACHE_ENTRIES)
    finally:
        stop.set()
    started[0].join(timeout=10)
    assert not started[0].is_alive()


def test_live_recordings_beyond_the_bound_are_refused_with_a_message_until_one_ends(overfit, monkeypatch):
    """Every live recording holds a stream (a model state) per streaming model: the page takes at most
    MAX_LIVE_STREAMS at once. One more is told so and holds nothing; a recording that ends (stop), or that has
    sent nothing for LIVE_IDLE_SECONDS (a closed tab), makes room."""
    import asr.app.serve as serve

    monkeypatch.setattr(serve, "MAX_LIVE_STREAMS", 2)
    monkeypatch.setattr(serve, "LIVE_STREAMS", serve.LiveStreams())
    models = serve.load_models([overfit.checkpoint])
    chunk = str(overfit.utterances[0].path)
    first = serve.live_chunk(models, chunk, None)[1]
    second = serve.live_chunk(models, chunk, None)[1]
    assert first is not None and second is not None
    table, refused = serve.live_chunk(models, chunk, None)
    assert refused is None and "2 live recordings" in table and "try again" in table
    assert serve.live_chunk(models, chunk, first)[1] is first  # the open ones go on
    serve.live_finish(models, first)
    third = serve.live_chunk(models, chunk, None)[1]
    assert third is not None  # a stopped recording made room
    assert serve.live_chunk(models, chunk, None)[1] is None
    serve.LIVE_STREAMS.seen[second.key] -= serve.LIVE_IDLE_SECONDS + 1  # abandoned: nothing sent for a while
    assert serve.live_chunk(models, chunk, None)[1] is not None


def test_the_page_answers_every_request_of_a_soak_and_keeps_its_stderr(server, server_temp, data_dir, tmp_path):
    """benchmarks/serve_soak.py against the served page, bounded: 40 requests from 8 threads at once, recordings
    and files it must refuse, while a browser records on the Live tab; every one answered, every bad file refused with
    its message, no recording refused, every live recording ended.
    Afterwards the server's stderr is still its log (overlapping reads used to leave it on /dev/null)."""
    out = tmp_path / "soak.json"
    done = subprocess.run([sys.executable, str(SOAK),
                           "--url", server, "--calls", "40", "--data-dir", str(data_dir), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    soak = json.loads(out.read_text())
    assert soak["unanswered"] == soak["misjudged"] == 0 and soak["by_kind"] == {"good": 32, "bad": 8}
    live = soak["live"]  # recordings on the Live tab meanwhile, from a browser: each one ended with its final table
    assert live["recordings"] >= 1 and live["ended"] == live["recordings"] and live["chunks"] > 10, live
    assert os.readlink(f"/proc/{SERVED['process'].pid}/fd/2") == str(server_temp / "server.log")


def test_figures_are_drawn_from_many_threads_at_once():
    """The page's events run on several threads (a recording's chart while another's is drawn, the Live tab's
    stop): log-scale tick labels written as mathtext went through matplotlib's one shared parser, which is not
    thread-safe (a ParseException under 8 threads). Each figure built and saved as Gradio saves it, 8 at a time."""
    import io
    from concurrent.futures import ThreadPoolExecutor

    import asr.app.serve as serve

    def draw(i: int) -> int:
        curves = {f"m{j}": list(np.logspace(0, -(i % 7 + j + 3), 120)) for j in range(3)}
        buffer = io.BytesIO()
        serve.gradient_figure(curves, 30.0).savefig(buffer, format="png")
        return len(buffer.getvalue())

    with ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(draw, range(64)))
    assert min(sizes) > 1000


def test_the_page_serves_exported_models_where_torch_cannot_be_imported(playwright, an4_test_wav, tmp_path, capsys):
    """`asr serve` on the shipped step graphs and a whole-recording graph, in a process that cannot import torch: the
    Live tab streams the fake microphone (an AN4 test recording) through onnxruntime and ends where
    `asr transcribe --stream NAME.step.onnx` ends on the recording the page offers, and the Recording tab (its API)
    gives what `asr transcribe` gives (a step graph: the file as one stream, one segment); the server's memory does not
    step up at the first file only the fallback decoder tries. The microphone plays the
    recording's speech without its leading and trailing silence: looped, it never pauses long enough for the endpoint
    rules, whose cuts fall on chunk edges, and the page's chunks (whatever the browser sends) are not the command's."""
    from gradio_client import Client, handle_file

    from asr.app.serve import served
    from asr.data.audio import read_audio
    from asr.decode.segment import window_energy_db
    from helpers import without_torch

    audio, rate = read_audio(an4_test_wav)
    energy, hop = window_energy_db(audio, rate), int(rate * 0.02)
    loud = np.flatnonzero(energy > energy.max() - 30)
    speech = tmp_path / "speech.wav"
    soundfile.write(speech, audio[loud[0] * hop : (loud[-1] + 1) * hop], rate, subtype="PCM_16")

    env = {"OMP_NUM_THREADS": "1", **without_torch(tmp_path / "site")}
    refused = subprocess.run([sys.executable, "-c", "import torch"], env={**os.environ, **env}, capture_output=True)
    assert refused.returncode != 0 and b"not installed here" in refused.stderr
    shipped = Path(__file__).resolve().parents[1] / "checkpoints"
    live, tanh, whole = (shipped / f"{n}.onnx" for n in ("an4_lstm_stream.step", "an4_tanh_rnn_clipped_stream.step",
                                                           "an4_lstm"))
    text = tmp_path / "text.wav"
    text.write_text("not audio at all")
    with served([live, tanh, whole], tmp_path / "server.log", env) as (url, server):
        client = Client(url, verbose=False)
        status, table, figure = client.predict(handle_file(str(an4_test_wav)), "", api_name="/transcribe")
        # a file soundfile cannot read goes to librosa's loader, whose import costs about 170 MB: the server pays that
        # at start, so its memory after the first such upload is what it was before (+161 MB before it did)
        before = rss_mb(server.pid)
        refused = client.predict(handle_file(str(text)), "", api_name="/transcribe")[0]
        assert "unreadable or corrupt audio" in refused and rss_mb(server.pid) - before < 60, (before, rss_mb(server.pid))
        chromium, page = recording_live(playwright, url, speech)
        lstm = "#live-table [data-model='an4_lstm_stream.step'] .transcript"
        page.wait_for_function(f"(document.querySelector(\"{lstm}\") || {{}}).innerText?.trim()", timeout=60000)
        page.wait_for_timeout(4000)  # the speech plays in a loop: all of it at least once
        page.locator("#live-audio button", has_text="Stop").first.click()
        page.wait_for_selector("#live-table[data-state='final']", timeout=60000)
        final = page.inner_text(lstm).strip()
        href = page.locator("#live-recording a").first.get_attribute("href")
        recording = tmp_path / "recording.wav"
        recording.write_bytes(urllib.request.urlopen(urllib.parse.urljoin(url, href), timeout=30).read())
        chromium.close()
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "3 model(s)" in status and figure is None  # no gradient chart without torch
    for model, whole_file in ((live, ["--stream", "--no-endpoint"]), (tanh, ["--stream", "--no-endpoint"]), (whole, [])):
        assert main(["transcribe", *whole_file, str(model), str(an4_test_wav)]) == 0  # a step graph: one segment
        assert f"<td class='transcript'>{capsys.readouterr().out.strip()}</td>" in table
    assert final and main(["transcribe", "--stream", str(live), str(recording)]) == 0
    assert capsys.readouterr().out.strip() == final

