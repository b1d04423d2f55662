"""A screenshot of `asr serve` comparing checkpoints on one recording, for the README.

    .venv/bin/python scripts/serve_screenshot.py OUT.png AUDIO.wav "WHAT WAS SAID" [CKPT ...]

Without checkpoints the page serves the shipped AN4 models (scripts/reproduce_reports.sh makes docs/serve.png so).

Starts `asr serve` on a free loopback port, drives Debian's Chromium (Playwright) through an upload and a
click, saves the page, stops the server. (tests/test_serve.py does the same with assertions.)
"""
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from asr.app.serve import served


def main(out: str, audio: str, typed: str, *checkpoints: str) -> None:
    with tempfile.TemporaryDirectory() as work, served(list(checkpoints), Path(work) / "server.log") as (url, _):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            page.locator("#audio-input input[type=file]").set_input_files(audio)
            page.wait_for_selector("#audio-input audio, #audio-input .waveform-container", state="attached")
            page.fill("#reference-text textarea", typed)
            page.click("#transcribe-button")
            page.wait_for_selector("#results-table", timeout=120000)
            page.wait_for_selector("#gradient-plot img, #gradient-plot svg", timeout=60000)
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=out, full_page=True)
            browser.close()
    print(out)


if __name__ == "__main__":
    main(*sys.argv[1:])
