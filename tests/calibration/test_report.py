"""The HTML comparison report: rendered from a real run of the example, then read back in a real browser.

The browser part drives Debian's `chromium` from the command line (no extra Python packages):
`--dump-dom` gives the DOM after the inline script ran, `--log-net-log` every request the page
made, `--screenshot` what a person sees.
"""
from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from int8wb.calibration import load_spec
from int8wb.calibration.report import pair_layers, render_html, write_html
from int8wb.calibration.workflow import calibrate
from conftest import copy_example

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not on PATH (Debian: apt-get install chromium; .ci/run installs it)")
VARIANTS = ("fp32_f32", "fp32_default", "int8")


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    """One real calibration of the shipped example (short speed runs), shared by the module."""
    return calibrate(load_spec(copy_example(tmp_path_factory.mktemp("example"))))


@pytest.fixture(scope="module")
def report(result, tmp_path_factory) -> Path:
    return write_html(result, tmp_path_factory.mktemp("report") / "model.int8.report.html")


# ---- reading a page back -------------------------------------------------------------------

class Page(HTMLParser):
    """Every element with a data-* attribute (with its text and nearest such ancestor), and every URL."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[dict] = []
        self.urls: list[str] = []
        self._open: list[tuple[str, dict | None]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.urls += [v for k, v in attrs.items() if k in ("src", "href", "xlink:href", "srcset", "action") and v]
        if tag in self.VOID:
            return
        element = None
        if any(k.startswith("data-") for k in attrs):
            parent = next((e for _, e in reversed(self._open) if e is not None), None)
            element = {"tag": tag, "attrs": attrs, "text": "", "parent": parent}
            self.elements.append(element)
        self._open.append((tag, element))

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data):
        for _, element in self._open:
            if element is not None:
                element["text"] += data

    def fields(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for e in self.elements:
            if "data-field" in e["attrs"]:
                out.setdefault(e["attrs"]["data-field"], []).append(" ".join(e["text"].split()))
        return out

    def layer_rows(self) -> list[dict]:
        """Rows of the per-layer table in page order: the row's attributes plus {data-col: text}."""
        rows = [e for e in self.elements if "data-row" in e["attrs"]]
        return [{**row["attrs"], **{c["attrs"]["data-col"]: " ".join(c["text"].split()) for c in self.elements
                                    if c["parent"] is row and "data-col" in c["attrs"]}} for row in rows]

    def table(self) -> dict:
        return next(e["attrs"] for e in self.elements if e["attrs"].get("data-table") == "layers")


def ratio(value) -> float:
    return value["value"] if isinstance(value, dict) else value  # results before interleaved rounds: a number


def expected_fields(res: dict) -> dict[str, str]:
    """What the page must show for each data-field, formatted as documented for the report."""
    out = {
        "fp32.accuracy": f"{res['fp32']['accuracy'] * 100:.2f} %",
        "int8.accuracy": f"{res['int8']['accuracy'] * 100:.2f} %",
        "drop": f"{res['drop'] * 100:+.2f} pp",
        "speedup.vs_f32": f"{ratio(res['speedup']['vs_f32']):.2f}×",
        "speedup.vs_default": f"{ratio(res['speedup']['vs_default']):.2f}×",
        "int8_layer_count": str(res["int8_layer_count"]),
    }
    for v in VARIANTS:
        out[f"throughput.{v}"] = f"{res['throughput'][v]:,.1f} /s"
        out[f"latency_ms.{v}"] = f"{res['latency_ms'][v]:.3f} ms"
    for v in ("fp32", "int8"):
        n = res["model_size"][v]
        out[f"model_size.{v}"] = f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"
    for v in ("fp32_f32", "int8"):
        out[f"total_time_us.{v}"] = f"{res['layer_summary'][v]['total_time_us']:,.1f} µs"
        for precision, count in res["layer_summary"][v]["layers_by_precision"].items():
            out[f"layers_by_precision.{v}.{precision}"] = str(count)
    return out


def chromium(profile: Path, url: str, *flags: str) -> str:
    """Runs headless Chromium once; name resolution is disabled so nothing can leave the machine."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND", "--hide-scrollbars",
           f"--user-data-dir={profile}", *flags, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


def page_requests(netlog: Path) -> list[str]:
    """Non-file URLs requested on behalf of the page (the browser's own background calls excluded).

    A request the page makes is keyed to its top-level site, which for a local report is file://.
    """
    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params", {})
        if event["type"] == start and not params.get("url", "").startswith("file:"):
            if "file://" in params.get("network_isolation_key", "") + params.get("site_for_cookies", ""):
                urls.append(params["url"])
    return urls


# ---- without a browser -----------------------------------------------------------------------

def test_page_is_one_self_contained_file(report):
    html = report.read_text(encoding="utf-8")
    page = Page(html)
    assert not [u for u in page.urls if re.match(r"(?i)\s*(https?:)?//", u)], page.urls
    assert not re.search(r"(?i)<link\b|@import|url\(|<script[^>]+src=|<iframe|<object", html)
    assert "<style>" in html and "@media print" in html and "<svg" in html
    assert not list(report.parent.glob(".*.tmp-*"))


def test_figures_in_the_html_match_the_result(result):
    fields = Page(render_html(result)).fields()
    for field, text in expected_fields(result).items():
        assert fields.get(field), f"{field} missing"
        assert set(fields[field]) == {text}, (field, fields[field], text)


def test_layer_table_pairs_fp32_and_int8_rows(result):
    pairs = pair_layers(result["layers"]["fp32_f32"], result["layers"]["int8"])
    shown_fp32 = [p["fp32"]["name"] for p in pairs if p["fp32"]]
    shown_int8 = [p["int8"]["name"] for p in pairs if p["int8"]]
    assert shown_fp32 == [r["name"] for r in result["layers"]["fp32_f32"]]  # every row once, in order
    assert shown_int8 == [r["name"] for r in result["layers"]["int8"]]
    convs = [p for p in pairs if p["int8"] and p["int8"]["type"] == "Convolution"]
    assert convs and all(p["fp32"] and p["fp32"]["type"] == "Convolution" for p in convs)
    assert all(set(p["fp32"]["originalLayers"]) & set(p["int8"]["originalLayers"]) for p in convs)
    total = result["layer_summary"]["int8"]["total_time_us"] - result["layer_summary"]["fp32_f32"]["total_time_us"]
    assert sum(p["delta"] for p in pairs) == pytest.approx(total, abs=0.05)


def test_pairing_falls_back_to_names_and_keeps_unmatched_rows_in_place():
    row = lambda name, orig=(): {"name": name, "type": "T", "time_us": 1.0, "originalLayers": list(orig)}  # noqa: E731
    fp32 = [row("reorder_a"), row("conv", ["conv", "relu"]), row("pool", ["pool"])]
    int8 = [row("fq", ["fq"]), row("conv_q", ["conv", "relu", "fq2"]), row("reorder_a"), row("pool", ["pool"])]
    got = [(p["fp32"] and p["fp32"]["name"], p["int8"] and p["int8"]["name"]) for p in pair_layers(fp32, int8)]
    assert got == [(None, "fq"), ("conv", "conv_q"), ("reorder_a", "reorder_a"), ("pool", "pool")]


def test_sections_follow_what_the_result_holds(result):
    plain = Page(render_html(result))
    sections = {e["attrs"]["data-section"] for e in plain.elements if "data-section" in e["attrs"]}
    assert ("fp32-layers" in sections) == (result.get("fp32_layers") is not None)  # none for Default
    assert ("notes" in sections) == bool(result["notes"])
    assert ("budget" in plain.fields()) == (result.get("budget") is not None)

    richer = copy.deepcopy(result)
    richer["notes"] = ["The INT8 model is slower than the FP32 model as CPU runs it by default (bf16): 1.0 vs 2.0."]
    richer["budget"] = 0.01
    richer["fp32_layers"] = [
        {"name": "Multiply_3066", "type": "Convolution", "score": 0.25, "reason": "rank 2 of 4"},
        {"name": "Multiply_3087", "type": "Convolution", "score": 0.5, "macs": 110_592_000, "reason": "rank 1 of 4"}]
    page = Page(render_html(richer))
    sections = [e["attrs"].get("data-section") for e in page.elements if "data-section" in e["attrs"]]
    assert sections.index("notes") < sections.index("summary")  # notes come first, above the figures
    fields = page.fields()
    assert fields["notes.0"] == [richer["notes"][0]]
    assert fields["budget"] == ["1.00 pp"]
    assert fields["budget.verdict"] == ["within" if richer["drop"] <= 0.01 else "over"]
    listed = [e["attrs"]["data-fp32-layer"] for e in page.elements if "data-fp32-layer" in e["attrs"]]
    assert listed == ["Multiply_3087", "Multiply_3066"]  # most sensitive first
    assert fields["fp32_layers.Multiply_3087.score"] == ["0.5"]
    assert fields["fp32_layers.Multiply_3087.macs"] == ["111"] and fields["fp32_layers.Multiply_3066.macs"] == ["—"]

    # AccuracyAware's own budget record, missed: said first, before any note.
    richer["budget"] = {"max_drop": 0.001, "drop_type": "absolute", "measured": 0.0037, "met": False}
    fields = Page(render_html(richer)).fields()
    assert fields["budget"] == ["0.10 pp"] and fields["budget.verdict"] == ["over"]
    assert "+0.37 pp exceeds the allowed 0.10 pp" in fields["notes.budget"][0]
    assert list(fields).index("notes.budget") < list(fields).index("notes.0")


def test_custom_metric_is_shown_in_its_own_units(result):
    custom = copy.deepcopy(result)
    custom.update(metric="word_error", metric_higher_is_better=False, drop=0.0125)
    custom["fp32"]["accuracy"], custom["int8"]["accuracy"] = 0.25, 0.2625
    fields = Page(render_html(custom)).fields()
    assert fields["fp32.accuracy"] == ["0.25", "0.25"] and fields["int8.accuracy"] == ["0.2625", "0.2625"]
    assert fields["drop"] == ["+0.0125"]


def test_write_html_replaces_atomically_and_leaves_nothing_on_failure(result, tmp_path, monkeypatch):
    target = tmp_path / "model.int8.report.html"
    target.write_text("old")
    write_html(result, target)
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    before = target.read_text(encoding="utf-8")
    broken = copy.deepcopy(result)
    del broken["throughput"]
    with pytest.raises(Exception):
        write_html(broken, target)
    assert target.read_text(encoding="utf-8") == before
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


# ---- in a browser ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browsed(report, tmp_path_factory):
    """The DOM after scripts ran, and the page's own network requests."""
    folder = tmp_path_factory.mktemp("chromium")
    netlog = folder / "net.json"
    dom = chromium(folder / "profile", report.as_uri(), f"--log-net-log={netlog}", "--dump-dom")
    return Page(dom), page_requests(netlog)


@needs_chromium
def test_browser_shows_the_results_figures(browsed, result):
    page, _ = browsed
    fields = page.fields()
    for field, text in expected_fields(result).items():
        assert set(fields.get(field, [])) == {text}, (field, fields.get(field), text)
    assert page.table().get("data-sortable") == "ready"  # the inline script ran without error


@needs_chromium
def test_browser_layer_table_shows_int8_convolutions(browsed, result):
    rows = Page.layer_rows(browsed[0])
    assert len(rows) >= max(len(result["layers"]["int8"]), len(result["layers"]["fp32_f32"]))
    convs = [r for r in rows if r["data-type"] == "Convolution"]
    assert convs and all(r["int8.outputPrecisions"].upper() in ("U8", "I8") for r in convs)
    assert all(r["int8.runtimePrecision"].upper() in ("U8", "I8") for r in convs)
    assert all(r["fp32.runtimePrecision"] == "f32" for r in convs)
    first = result["layers"]["int8"][0]
    assert rows[0]["name"].startswith(first["name"]) and rows[0]["int8.time"] == f"{first['time_us']:,.1f} µs"


@needs_chromium
def test_browser_page_makes_no_network_request(browsed, tmp_path):
    assert browsed[1] == []
    # The detector itself must see a request when a page does make one.
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<!DOCTYPE html><img src="http://report.invalid/pixel.png">')
    chromium(tmp_path / "profile", leaky.as_uri(), f"--log-net-log={tmp_path / 'net.json'}", "--dump-dom")
    assert page_requests(tmp_path / "net.json") == ["http://report.invalid/pixel.png"]


@needs_chromium
def test_browser_sorts_the_layer_table_from_the_address(report, tmp_path):
    dom = chromium(tmp_path / "profile", report.as_uri() + "#sort=-int8.time", "--dump-dom")
    page = Page(dom)
    assert page.table()["data-sorted"] == "-int8.time"
    times = [float(r.replace(",", "").split()[0]) for r in (row["int8.time"] for row in page.layer_rows())
             if r != "—"]
    assert times == sorted(times, reverse=True) and len(times) > 3


@needs_chromium
def test_browser_screenshot_shows_a_page(report, tmp_path):
    png = tmp_path / "report.png"
    chromium(tmp_path / "profile", report.as_uri(), f"--screenshot={png}", "--window-size=1280,2000")
    with Image.open(png) as image:
        assert image.size == (1280, 2000)
        colours = image.convert("RGB").resize((64, 100)).getcolors(64 * 100)
    assert colours and len(colours) > 20  # text, charts and badges, not a blank or error page
