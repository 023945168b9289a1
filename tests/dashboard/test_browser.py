"""The dashboard in a real headless Chromium, fed by a real digits-dvs live pipeline through its
zmq sink: decisions equal to the JSONL's, a drawn event image, latency figures; it survives a
closed and reopened tab, a publisher restart and a malformed message."""

import json
import math
import subprocess
import sys

import zmq

from streamsnn.prediction import Prediction
from streamsnn.sinks.zeromq import ZmqSink, ZmqSinkConfig
from tests.dashboard.conftest import ROOT, DashboardProcess, artifact, free_port, poll

NEWEST_FINAL = """() => {
  const row = document.querySelector("tr.final");
  if (!row) return null;
  return {stream: row.dataset.stream, decision: Number(row.dataset.decision),
          cls: row.querySelector("td.class").textContent,
          confidence: row.querySelector("td.confidence").textContent};
}"""
LIT_PIXELS = """() => {
  const c = document.querySelector("canvas.events");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let lit = 0;
  for (let i = 0; i < d.length; i += 4) lit += d[i] + d[i + 1] + d[i + 2] > 60;
  return lit;
}"""


def finals_shown(page) -> int:
    return page.locator("tr.final").count()


def latency_figures(page) -> dict[str, str]:
    return {
        f"{kind}.{q}": page.locator(f"#lat-{kind}_latency_ms .{q}").inner_text()
        for kind in ("input", "compute", "e2e")
        for q in ("p50", "p99")
    }


def test_the_page_shows_a_live_pipeline_as_its_jsonl_has_it(chromium, tmp_path):
    feed = f"tcp://127.0.0.1:{free_port()}"
    jsonl = tmp_path / "predictions.jsonl"
    sinks = (
        f"sinks=[{{type: jsonl, path: '{jsonl}'}}, {{type: zmq, address: '{feed}', wait_for_subscribers: 1, "
        "wait_timeout_s: 120, frames: {rate_hz: 10, size: 64}}]"
    )
    with DashboardProcess(feed) as dashboard:
        run = subprocess.Popen(
            [
                *(sys.executable, "-m", "streamsnn.cli", "run", "pipelines/udp_live.yaml"),
                *("--set", "source={type: digits_dvs, live: true, scenario: back_to_back, limit: 40}"),
                *("--set", sinks, "--set", f"report.path={tmp_path / 'report.json'}"),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            page = chromium.new_page(viewport={"width": 1280, "height": 900})
            requested = []
            page.on("request", lambda request: requested.append(request.url))
            page.goto(dashboard.url)
            poll(lambda: finals_shown(page) >= 10, 300, "10 final decisions on the page", every_s=0.2)
            newest = page.evaluate(NEWEST_FINAL)
            lit = page.evaluate(LIT_PIXELS)
            figures = latency_figures(page)
            for path in artifact(tmp_path, "dashboard.png"):
                page.screenshot(path=str(path), full_page=True)
            _, err = run.communicate(timeout=300)
            assert run.returncode == 0, err
        finally:
            if run.poll() is None:
                run.kill()
        # the newest final on the page is the JSONL's decision of that stream and number
        rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
        same = [
            r
            for r in rows
            if r["final"] and r["stream"] == newest["stream"] and r["sample"] == newest["decision"]
        ]
        assert len(same) == 1, newest
        assert newest["cls"] == str(same[0]["class"])
        assert newest["confidence"] == f"{same[0]['confidence']:.3f}"
        assert lit > 0, "the event image is blank"
        origin = dashboard.url.replace("http://", "")
        assert requested and all(url.split("://", 1)[1].startswith(origin) for url in requested), requested
        for name, text in figures.items():
            assert math.isfinite(float(text)), (name, text)
        # the run is over: the page says so and shows the summary and every decision
        finals = sum(r["final"] for r in rows)
        poll(lambda: page.locator("#summary-panel").is_visible(), 60, "the summary on the page")
        assert page.locator(".tally").inner_text().startswith(f"{finals} decisions")
        # a closed tab reopened gets the current state at once
        page.close()
        again = chromium.new_page(viewport={"width": 1280, "height": 900})
        again.goto(dashboard.url)
        poll(lambda: again.locator("#summary-panel").is_visible(), 30, "the summary on a reopened tab")
        assert finals_shown(again) == min(finals, 50)
        last = [r for r in rows if r["final"]][-1]
        shown = again.evaluate(NEWEST_FINAL)
        assert (shown["decision"], shown["cls"]) == (last["sample"], str(last["class"]))
        assert shown["confidence"] == f"{last['confidence']:.3f}"
        assert again.evaluate(LIT_PIXELS) > 0
        for path in artifact(tmp_path, "dashboard_ended.png"):
            again.screenshot(path=str(path), full_page=True)
        again.close()
    assert dashboard.proc.returncode in (0, -2), "".join(dashboard.lines)


def prediction(stream: str, sample: int, step: int, final: bool) -> Prediction:
    probs = [0.01] * 10
    probs[3] = 0.91
    return Prediction(stream, sample, step, step * 20_000, (step + 1) * 20_000, 3, 0.91, probs, final=final)


def publish_decisions(sink: ZmqSink, stream: str, first: int, n: int) -> None:
    for sample in range(first, first + n):
        for step in (1, 2, 3):
            sink.write(prediction(stream, sample, step, final=step == 3))


def test_the_page_survives_a_restart_a_malformed_message_and_a_closed_tab(chromium, tmp_path):
    feed = f"tcp://127.0.0.1:{free_port()}"
    options = {"address": feed, "wait_for_subscribers": 1, "wait_timeout_s": 60, "publisher_id": "cam-box"}
    with DashboardProcess(feed) as dashboard:
        page = chromium.new_page()
        page.goto(dashboard.url)
        sink = ZmqSink(ZmqSinkConfig(**options))
        sink.start()
        publish_decisions(sink, "cam0", 0, 5)
        poll(lambda: finals_shown(page) == 5, 60, "the first run's 5 decisions")
        sink.close()
        # a malformed message on the same address (a raw publisher between the two runs)
        ctx = zmq.Context()
        raw = ctx.socket(zmq.XPUB)
        raw.bind(feed)
        try:
            assert raw.poll(60_000), "the dashboard did not subscribe to the raw publisher"
            while raw.poll(500):
                raw.recv()

            def malformed_shown():
                raw.send_multipart([b"pred.cam0", b"\xc1 not msgpack"])
                return page.locator("#health-malformed").inner_text() not in ("", "0")

            poll(malformed_shown, 60, "the malformed message counted on the page", every_s=0.5)
        finally:
            raw.close(linger=0)
            ctx.term()
        page.close()  # the tab closes while the publisher restarts
        sink = ZmqSink(ZmqSinkConfig(**options))
        sink.start()
        publish_decisions(sink, "cam0", 100, 3)
        page = chromium.new_page()
        page.goto(dashboard.url)
        poll(
            lambda: page.evaluate(NEWEST_FINAL) and page.evaluate(NEWEST_FINAL)["decision"] == 102,
            60,
            "run 2",
        )
        assert finals_shown(page) == 8
        poll(
            lambda: page.locator("#health-publisher_restarts").inner_text() == "1", 30, "the restart counted"
        )
        sink.close()
        poll(lambda: page.locator("#summary-panel").is_visible(), 30, "the second run's summary")
        page.close()
    assert not any("Traceback" in line for line in dashboard.lines), "".join(dashboard.lines)
