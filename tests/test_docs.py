"""What the README and docs/ say stays true: every WER or error-reduction figure they state about a committed
study or shipped model is read from the report or model card it came from, and the layout they describe holds.

A figure is marked in the Markdown by an HTML comment right after it, invisible when rendered:
`17.7<!-- an4_cpu: models/lstm/test_wer/mean -->` reads reports/an4_cpu/summary.json; the source `shipped` is
checkpoints/models.json (its first path step a model's name), a source ending in .json that file. A path step `*`
gathers every element of a list (then `| mean` averages them); `x100` turns a fraction into a percentage. The
figure must equal the value rounded to the decimals it shows. A figure from outside this project (a paper, another
toolkit) is marked `<!-- ext -->`; on the pages of results (README.md, docs/results.md) every percentage must carry
one mark or the other.
"""
import json
import re
import statistics
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
RESULT_PAGES = [REPO / "README.md", REPO / "docs/results.md"]
MARK = re.compile(r"(\d+(?:\.\d+)?)(?:\*\*)?<!-- ([\w./-]+): ([^>|]+?)(?: \| (mean))?( x100)? -->")
EXTERNAL = "<!-- ext -->"
PERCENT = re.compile(r"(?<![\w.\-])(\d+(?:\.\d+)?)(\*\*)?(<!-- [^>]* -->)?(\*\*)? ?%")


def read_source(source: str):
    if source == "shipped":
        return {m["name"]: m for m in json.loads((REPO / "checkpoints/models.json").read_text())["models"]}
    path = REPO / source if source.endswith(".json") else REPO / "reports" / source / "summary.json"
    return json.loads(path.read_text())


def follow(value, steps: list[str]):
    for n, step in enumerate(steps):
        if step == "*":
            return [follow(item, steps[n + 1:]) for item in value]
        value = value[int(step)] if isinstance(value, list) else value[step]
    return value


def figure(source: str, path: str, op, scale) -> float:
    value = follow(read_source(source), path.strip().split("/"))
    if op == "mean":
        value = statistics.mean(value)
    return value * 100 if scale else value


def marks(page: Path) -> list[tuple]:
    return [(page.relative_to(REPO), *m.groups()) for m in MARK.finditer(page.read_text())]


ALL_MARKS = [m for page in PAGES for m in marks(page)]


@pytest.mark.parametrize("page, shown, source, path, op, scale", ALL_MARKS,
                         ids=[f"{m[0]}:{m[2]}:{m[3]}" for m in ALL_MARKS])
def test_every_marked_figure_is_the_recorded_one(page, shown, source, path, op, scale):
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    value = figure(source, path, op, scale)
    assert f"{value:.{decimals}f}" == shown, f"{page} states {shown}, {source}: {path} holds {value}"


def test_the_result_pages_mark_every_percentage_and_state_the_headline_figures():
    """A percentage on a page of results without a mark would be checked by nothing: it fails here until it is
    read from its record (or declared external). The README's and results page's figures are many (not a few
    kept up by hand), and the README states the study's result in its first 40 lines."""
    for page in RESULT_PAGES:
        text = page.read_text()
        unmarked = [m.group(0) for m in PERCENT.finditer(text) if not m.group(3)]
        assert not unmarked, f"{page.name}: unmarked percentages {unmarked}"
        assert len(marks(page)) >= 10, page
    head = "\n".join((REPO / "README.md").read_text().splitlines()[:40])
    assert "an4_cpu: models/lstm/test_wer/mean" in head and "an4_cpu: relative_wer_reduction/lstm x100" in head


def test_a_wrong_figure_would_fail():
    """The check above is not vacuous: a figure off in its last digit, or rounded otherwise, does not pass."""
    value = figure("an4_cpu", "models/lstm/test_wer/mean", None, None)
    assert f"{value:.1f}" == "17.7" and f"{value:.1f}" != "17.8"
    assert round(figure("an4_cpu", "models/lstm/runs/*/conditions/speed_0.9/wer", "mean", None), 1) == 20.2


def test_every_page_link_and_file_named_in_the_docs_exists():
    """Links between the pages and the files they name (`asr/...`, `recipes/...`, `scripts/...`) exist; the model card
    (written by scripts/ship_checkpoints.py) too."""
    for page in [*PAGES, REPO / "checkpoints/README.md"]:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), f"{page.name} links to {target}"
        for named in re.findall(r"`((?:asr|recipes|scripts|benchmarks|tests|checkpoints|reports)/[\w./-]+)`", text):
            assert (REPO / named).exists() or (page.parent / named).exists(), f"{page.name} names {named}"


def test_the_tree_is_as_the_docs_describe_it():
    """README.md a landing page (at most 150 lines), asr/ in at most 10 entries whose layers import only the layers
    below them (docs/architecture.md), recipes/ of at most 12 files."""
    assert len((REPO / "README.md").read_text().splitlines()) <= 150
    entries = sorted(p.name for p in (REPO / "asr").iterdir() if p.name != "__pycache__" and not p.name.endswith(".egg-info"))
    assert len(entries) <= 10, entries
    order = ["base", "data", "model", "decode", "train", "deploy", "study", "app"]
    assert set(order) <= set(entries)
    upward = []
    for module in (REPO / "asr").rglob("*.py"):
        layer = module.relative_to(REPO / "asr").parts[0]
        if layer not in order:
            continue
        for other in re.findall(r"^\s*(?:from|import) asr\.(\w+)", module.read_text(), re.M):
            if other in order and order.index(other) > order.index(layer):
                upward.append(f"{module.relative_to(REPO)} imports asr.{other}")
    assert not upward, upward
    assert len([p for p in (REPO / "recipes").rglob("*") if p.is_file()]) <= 12


def test_make_demo_keeps_its_report_with_its_run_and_leaves_the_committed_one_alone():
    """`make demo` trains into a new runs/an4_quick-<time>/ and writes its report there: the committed
    reports/an4_quick/ (whose figures docs/results.md states and this file checks) is not replaced by a user's run."""
    import subprocess

    done = subprocess.run(["make", "-n", "demo", "ASR_DATA_DIR=/nowhere"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    (compare,) = [line for line in done.stdout.splitlines() if " compare " in line]
    assert "run=runs/an4_quick-" in done.stdout and "--runs-dir $run --report-dir $run/report" in compare, compare
    assert "reports/" not in compare, compare
