"""The dashboard server as a real process: snapshots pushed at a bounded rate whatever the feed's,
a slow browser skipping states instead of queueing them, and the command's errors."""

import json
import socket
import time

import pytest

from streamsnn.cli import main
from streamsnn.dashboard.server import PUSH_HZ
from streamsnn.prediction import Prediction
from streamsnn.sinks.zeromq import ZmqSink, ZmqSinkConfig
from tests.dashboard.conftest import DashboardProcess, free_port, poll

websockets_client = pytest.importorskip("websockets.sync.client")


def publish(sink, n, first=0):
    probs = [0.1] * 10
    for i in range(first, first + n):
        sink.write(Prediction("cam0", i // 10, i % 10 + 1, 0, 1, 0, 0.1, probs, final=i % 10 == 9))


def drain(ws, quiet_s=0.5):
    """The snapshots waiting for the client (until none comes for ``quiet_s``)."""
    got = []
    while True:
        try:
            got.append(ws.recv(timeout=quiet_s))
        except TimeoutError:
            return got


def test_snapshots_come_at_a_bounded_rate_and_a_slow_browser_skips_states():
    sink = ZmqSink(ZmqSinkConfig(address=f"tcp://127.0.0.1:{free_port()}", wait_for_subscribers=1))
    with DashboardProcess(sink.endpoint) as dashboard:
        sink.start()
        with websockets_client.connect(dashboard.url.replace("http", "ws") + "ws", max_size=None) as ws:
            drain(ws)
            start, sent = time.monotonic(), 0
            received = []
            while time.monotonic() - start < 2.0:  # the feed as fast as it goes, read as it comes
                publish(sink, 100, sent)
                sent += 100
                while True:
                    try:
                        received.append(ws.recv(timeout=0))
                    except TimeoutError:
                        break
            elapsed = time.monotonic() - start
            assert sent > 1000 and 1 <= len(received) <= PUSH_HZ * elapsed + 2
            # a browser that reads nothing for 2 s gets at most what the push rate allows, not the feed
            start = time.monotonic()
            while time.monotonic() - start < 2.0:
                publish(sink, 100, sent)
                sent += 100
            waited = drain(ws)
            assert len(waited) <= PUSH_HZ * (time.monotonic() - start) + 2

            def accounted():  # every prediction sent is shown or counted as missed (heartbeats: the tail)
                snaps = [json.loads(text) for text in drain(ws, 0.2)]
                return any(s["predictions"] + s["health"]["missed"] == sent for s in snaps)

            poll(accounted, 30, "the newest state after the pause")
    sink.close()


def test_a_bad_feed_address_or_a_busy_port_is_a_clear_error(capsys):
    assert main(["dashboard", "tcp://127.0.0.1:99999", "--port", "0"]) == 2
    assert (
        "error: dashboard: cannot connect to 'tcp://127.0.0.1:99999': port 99999" in capsys.readouterr().err
    )
    assert main(["dashboard", "nonsense", "--port", "0"]) == 2
    assert "error: dashboard: cannot connect to 'nonsense'" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["dashboard", "tcp://127.0.0.1:5556", "--port", str(port)]) == 2
    assert (
        f"error: dashboard: cannot listen on 127.0.0.1:{port}: Address already in use"
        in capsys.readouterr().err
    )
    assert main(["dashboard", "tcp://127.0.0.1:5556", "--port", "70000"]) == 2
    assert "error: dashboard: --port 70000 is not in 0..65535" in capsys.readouterr().err
