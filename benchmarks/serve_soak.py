"""`asr serve` under load: hundreds of requests, 8 at a time, and the server's memory as they go.

    .venv/bin/python benchmarks/serve_soak.py --out benchmarks/serve_soak_cpu.json      # the shipped models
    .venv/bin/python benchmarks/serve_soak.py --url http://127.0.0.1:PORT/ --calls 48   # a running server

Starts `asr serve` (the shipped models, loopback only, one torch thread) unless --url names a running one, then
sends requests from 8 threads through the page's API (gradio_client), in a fixed mix: AN4 test recordings to
/transcribe and files the page must refuse (not audio, empty, too short, silence). Every request must come back:
a transcript, or for a bad file its message. Meanwhile a headless Chromium (Debian's, as tests/test_serve.py drives
it) records on the Live tab over and over, its fake microphone playing an AN4 test recording: live chunks, 100 ms
each, streamed to the live models (gradio_client 2 cannot send them: its status map lacks Gradio 6's
`process_streaming`); every recording must end with its final transcripts. The server's resident memory (VmRSS) is
read after a 16-call warm-up, after 200 and after 500 calls; at the end, where its stderr points (it must not be
/dev/null).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parents[1]
WORKERS = 8


def bad_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "text.wav").write_text("not audio at all")
    (folder / "empty.wav").write_bytes(b"")
    soundfile.write(folder / "short.wav", np.zeros(800, dtype=np.float32), 16000)  # 50 ms
    soundfile.write(folder / "silence.wav", np.zeros(16000, dtype=np.float32), 16000)
    return {name: folder / f"{name}.wav" for name in ("text", "empty", "short", "silence")}


def request_mix(calls: int, good: list[Path], bad: dict[str, Path]) -> list[tuple[str, Path]]:
    """Call i's kind and file: of every 10 calls, 8 recordings and 2 bad files."""
    kinds = ["good", "good", "good", "good", "bad", "good", "good", "good", "good", "bad"]
    names = sorted(bad)
    return [(kinds[i % 10], good[i % len(good)] if kinds[i % 10] != "bad" else bad[names[i % len(names)]])
            for i in range(calls)]


def one_call(client, kind: str, path: Path) -> dict:
    from gradio_client import handle_file

    start = time.perf_counter()
    status, table, _ = client.predict(handle_file(str(path)), "", api_name="/transcribe")
    refused = status.startswith("**error:**")
    return {"kind": kind, "answered": bool(status), "refused": refused, "wrong": refused == (kind == "good"),
            "seconds": time.perf_counter() - start}


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """The process's resident memory (VmRSS), or one of its parts: RssAnon (memory it allocated), RssFile (pages of
    files it mapped, shared libraries' code above all, which the kernel can drop and read again)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def record_live(url: str, microphone: Path, stop: threading.Event, seconds: float = 4.0) -> dict:
    """Recordings on the Live tab, one after another until `stop`: how many the browser started, how many of those
    ended (the final table came), and how many with words from every live model. A click on Record that started
    nothing in the browser (the page not ready yet, under load) is counted apart and tried again, and so is a
    recording whose page sent the server no audio in 60 s (Stop shown, the recording's start sent or not, but no
    chunk uploaded: the page's recorder never delivered one; seen under load, with and without the server's memory
    trim). Any other recording that does not end is a failure, listed with the page's requests meanwhile."""
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}"]
    made, unstarted, silent, ended, worded, chunks, errors = 0, 0, 0, 0, 0, 0, []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = browser.new_page()
        sent: list[str] = []  # the page's requests to the server, for a recording that did not end: what it asked
        page.on("request", lambda request: sent.append(f"{request.method} {request.url.split('?')[0].removeprefix(url)}"))
        page.goto(url)
        page.get_by_role("tab", name="Live").click()
        # until the requests are done, and past that until one recording was made (a few browser retries at most)
        while not stop.is_set() or (made == 0 and unstarted + silent < 5):
            try:  # the browser records (its Stop button is up): from here on the server must answer
                del sent[:]
                page.locator("#live-audio button", has_text="Record").first.click()
                page.locator("#live-audio button", has_text="Stop").first.wait_for(state="visible", timeout=20000)
            except Exception:  # noqa: BLE001 - the page took the click before its microphone was ready: again
                unstarted += 1
                page.goto(url)
                page.get_by_role("tab", name="Live").click()
                continue
            made += 1
            try:
                # this recording's first chunk is in (the last one's table says final): speak from here on
                page.wait_for_selector("#live-table[data-state='so far']", timeout=60000)
                page.wait_for_timeout(seconds * 1000)
                page.locator("#live-audio button", has_text="Stop").first.click()
                page.wait_for_selector("#live-table[data-state='final']", timeout=120000)
                texts = page.locator("#live-table .transcript").all_inner_texts()
                ended += 1
                worded += bool(texts) and all(t.strip() for t in texts)
                chunks += int(page.inner_text("#live-status").split(" chunks")[0].split()[-1])
            except Exception as e:  # noqa: BLE001 - a recording that did not end is what this counts
                if not any("/upload" in r for r in sent):  # Stop was shown, but the page sent no audio at all: its
                    made -= 1  # recorder never delivered a chunk (Chromium's fake microphone under load), so there was
                    silent += 1  # nothing for the server to answer: counted apart and tried again
                else:
                    asked = {r: sent.count(r) for r in dict.fromkeys(sent)}
                    errors.append(f"{type(e).__name__}: {e}"[:300] + f" (the page's requests meanwhile: {asked})")
                page.goto(url)
                page.get_by_role("tab", name="Live").click()
        browser.close()
    return {"recordings": made, "ended": ended, "with_words": worded, "chunks": chunks, "errors": errors[:5],
            "clicks_that_started_nothing": unstarted, "recordings_the_browser_sent_nothing_of": silent}


def run(url: str, calls: int, pid: int | None, good: list[Path], work: Path, live: bool = True) -> dict:
    bad = bad_files(work / "bad")
    mix = request_mix(calls, good, bad)
    marks = {16: "after_warmup_16", 200: "after_200", 500: "after_500"}
    memory, parts, results, lock = {}, {}, [], threading.Lock()
    clients = threading.local()  # one client (one browser session) per worker thread

    def task(kind: str, path: Path) -> None:
        from gradio_client import Client

        try:
            if not hasattr(clients, "client"):
                clients.client = Client(url, verbose=False)
            result = one_call(clients.client, kind, path)
        except Exception as e:  # noqa: BLE001 - an unanswered request is what this measures
            result = {"kind": kind, "answered": False, "error": f"{type(e).__name__}: {e}"[:300]}
        with lock:
            results.append(result)
            if pid is not None and len(results) in marks:
                memory[marks[len(results)]] = round(rss_mb(pid), 1)
                parts[marks[len(results)]] = {f: round(rss_mb(pid, f), 1) for f in ("RssAnon", "RssFile")}

    started = time.perf_counter()
    stop, recorded = threading.Event(), {}
    recorder = threading.Thread(target=lambda: recorded.update(record_live(url, good[0], stop))) if live else None
    if recorder is not None:
        recorder.start()
    with ThreadPoolExecutor(WORKERS) as pool:
        for kind, path in mix:
            pool.submit(task, kind, path)
    stop.set()
    if recorder is not None:
        recorder.join()
    seconds = time.perf_counter() - started
    by_kind = {k: sum(r["kind"] == k for r in results) for k in ("good", "bad")}
    return {"calls": calls, "workers": WORKERS, "seconds": round(seconds, 1), "by_kind": by_kind,
            "unanswered": sum(not r["answered"] for r in results),
            "misjudged": sum(bool(r.get("wrong")) for r in results),
            "errors": [r["error"] for r in results if "error" in r][:5], "rss_mb": memory, "rss_parts_mb": parts,
            **({"live": recorded} if live else {})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running `asr serve` (else one is started with the shipped models)")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--data-dir", default=os.environ.get("ASR_DATA_DIR", "data"))
    parser.add_argument("--out", help="write the results here as JSON")
    parser.add_argument("--no-live", action="store_true", help="API calls alone, no browser on the Live tab")
    args = parser.parse_args()
    from asr.app.serve import served
    from asr.data.corpora import load_split

    good = [u.path for u in load_split("an4", "test", args.data_dir)[:40]]
    with tempfile.TemporaryDirectory(prefix="serve-soak-") as work:
        work = Path(work)
        with contextlib.ExitStack() as stack:
            url, server, log = args.url, None, work / "server.log"
            if url is None:
                url, server = stack.enter_context(served([], log, {"OMP_NUM_THREADS": "1", "TMPDIR": str(work)}))
            result = run(url, args.calls, server.pid if server else None, good, work, live=not args.no_live)
            if server is not None:
                stderr = os.readlink(f"/proc/{server.pid}/fd/2")
                result["stderr_points_to"] = "the log" if stderr == str(log) else stderr
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores; server on 1 torch thread"
    rss = result["rss_mb"]
    if {"after_warmup_16", "after_200", "after_500"} <= set(rss):
        result["ratio_500_to_200"] = round(rss["after_500"] / rss["after_200"], 3)
        result["ratio_500_to_warmup"] = round(rss["after_500"] / rss["after_warmup_16"], 3)
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    live = result.get("live", {})
    live_ok = live.get("recordings", 0) == live.get("ended", 0)
    return 0 if result["unanswered"] == 0 and result["misjudged"] == 0 and live_ok else 1


if __name__ == "__main__":
    sys.exit(main())
