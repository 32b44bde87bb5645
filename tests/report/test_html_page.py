"""report.html for a tiny compare of hand-built run folders: what it shows, that it escapes what
it reads, that it references nothing outside itself, and (where Chromium is installed) that a
real headless browser renders the verdicts and every plot without a single network request."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ohemcli.report.analysis import Analysis, analyse_folders
from ohemcli.report.html_page import FIGURES
from ohemcli.report.render import write_analysis
from tests.report.fake_runs import fake_run

EVIL = "<script>alert('x')</script>"
COMMAND = "ohem compare --samplers fixed,hnm,ohem --seeds 1,2"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _iou(i: int) -> list[int]:
    return [0, 5, 4, 3, 2, 1, i, 1, 1, 1]


def tiny_compare(root: Path) -> Analysis:
    """fixed < hnm < ohem, two seeds each, an evaluation history and a chosen-IoU log; one
    run folder whose summary does not read (left out) and one run that did not finish."""
    for k, sampler in enumerate(("fixed", "hnm", "ohem")):
        for seed in (1, 2):
            final = 0.5 + 0.1 * k + 0.01 * seed
            history = [
                {
                    "iter": i,
                    "mAP": final * min(1.0, i / 4),
                    "train_seconds": i,
                    "mining_seconds": 0,
                    "wall_seconds": float(i),
                }
                for i in (2, 4, 6, 8)
            ]
            metrics = [{"iter": i, "loss": 1.0 / i, "fg_fraction": 0.25, "iou_hist": _iou(i)}
                       for i in (2, 4, 6, 8)]  # fmt: skip
            fake_run(root / "runs", sampler, seed, final, history=history, metrics=metrics,
                     iters=8, machine=f"x86_64 {EVIL}")  # fmt: skip
    broken = fake_run(root / "runs", "libra", 1, 0.4)
    broken.summary.write_text("{not json")
    a = analyse_folders([root], bootstrap=0)
    a.failed.append("pisa-s1: killed by signal 9")
    return a


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Analysis]:
    root = tmp_path_factory.mktemp("cmp")
    a = tiny_compare(root)
    written = write_analysis(root, a, command=COMMAND)
    assert root / "report.html" in written
    return root / "report.html", a


class Resources(HTMLParser):
    """Every URL the page would fetch or link to (src, href, xlink:href, srcset, CSS url())."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []
        self.style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.style = tag == "style"
        for name, value in attrs:
            if name in {"src", "href", "xlink:href", "srcset", "data", "action"} and value:
                self.urls.append(value)

    def handle_data(self, data: str) -> None:
        if self.style and "url(" in data:
            self.urls.append(data)


def _parsed(text: str) -> Resources:
    parser = Resources()
    parser.feed(text)
    return parser


def test_the_page_shows_every_part_top_to_bottom(page) -> None:
    path, a = page
    text = path.read_text(encoding="utf-8")
    order = ["Does ohem train a better detector than hnm?", 'id="verdicts"', 'id="left-out"',
             'id="samplers"', 'id="runs"', 'id="plots"', 'id="per-class-ap"',
             'id="provenance"']  # fmt: skip
    at = [text.index(part) for part in order]
    assert at == sorted(at)
    for verdict in a.pairs["verdict"]:
        assert f">{verdict}</td>" in text
    for name in FIGURES:
        assert f'<figure data-plot="{name}"><svg' in text, name
    assert text.count('<svg class="spark"') == len(a.results) == 6
    assert '<polyline points=""' not in text  # every run drew its history
    assert "0.7150 ± 0.0071" in text  # ohem: mean ± std over its two seeds (0.71, 0.72)
    assert "pisa-s1: killed by signal 9" in text and "libra-s1" in text  # left out, with why
    assert COMMAND in text and "sampler:" in text and "ohemcli" in text  # command, config, version


def test_everything_read_from_files_is_escaped(page) -> None:
    text = page[0].read_text(encoding="utf-8")
    assert EVIL not in text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in text
    assert "script" not in _parsed(text).tags


def test_the_page_references_nothing_outside_itself(page) -> None:
    found = _parsed(page[0].read_text(encoding="utf-8"))
    assert found.urls  # the plots' SVG markers: references inside the page, which count here
    # Only references inside the page: nothing on the web, not even the plots/ folder beside it.
    assert [u for u in found.urls if not u.startswith("#")] == []


def _browser() -> str:
    for name in BROWSERS:
        if found := shutil.which(name):
            return found
    pytest.skip(
        "no headless browser installed (apt-get install chromium; .ci/run installs it where it can)"
    )


def _open(browser: str, url: str, netlog: Path) -> str:
    """The DOM of ``url`` after Chromium loaded it, with every network event in ``netlog``."""
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--log-net-log={netlog}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout


def page_requests(netlog: Path) -> list[str]:
    """The URLs the page asked the network for: requests keyed to the page's file:// origin
    (the browser's own background requests, updates and the like, are keyed to none)."""
    events = json.loads(netlog.read_text(encoding="utf-8"))["events"]
    return sorted(
        {
            e["params"]["url"]
            for e in events
            if "url" in e.get("params", {})
            and "file://" in str(e["params"].get("network_isolation_key", ""))
            and not e["params"]["url"].startswith(("file:", "data:"))
        }
    )


def test_chromium_renders_the_verdicts_and_plots_without_a_request(page, tmp_path) -> None:
    browser = _browser()
    path, a = page
    dom = _open(browser, path.resolve().as_uri(), tmp_path / "page.json")
    assert "Does ohem train a better detector than hnm?" in dom
    for verdict in a.pairs["verdict"]:
        assert verdict in dom
    for name in FIGURES:  # each plot is in the rendered DOM, as an SVG with drawn content
        start = dom.index(f'data-plot="{name}"')
        assert dom.index("<svg", start) < dom.index("</figure>", start), name
        assert "<path" in dom[start : dom.index("</figure>", start)], name
    assert page_requests(tmp_path / "page.json") == []
    # The check would see a request: the same browser on a page with one external image.
    control = tmp_path / "control.html"
    control.write_text('<html><body><img src="https://example.invalid/x.png"></body></html>')
    _open(browser, control.as_uri(), tmp_path / "control.json")
    assert page_requests(tmp_path / "control.json") == ["https://example.invalid/x.png"]
