"""Bad input to the CLI's subscribe, send and config paths, and broken checkpoints: a line
``error: ...`` naming what is wrong and exit 2 (or, for bad messages, a counted recovery), never a
traceback. Real subprocesses, sockets on 127.0.0.1 and files."""

import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import zmq

from streamsnn.cli import main
from streamsnn.events import EVENT_DTYPE
from streamsnn.snn.checkpoint import ASSETS
from streamsnn.sources.udp import send_events
from tests.test_subscriber import WRONG_FIELDS, control, prediction

CLI = [sys.executable, "-m", "streamsnn.cli"]


def error_of(capsys, argv):
    """``streamsnn ARGV``'s stderr, checked to be one error line with exit 2."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_subscribe_skips_well_framed_messages_of_the_wrong_types_and_counts_them():
    """``streamsnn subscribe`` (a process of its own) fed every wrong-typed message of
    tests/test_subscriber.py between valid ones by a bare XPUB socket: it prints the valid ones,
    stops at the valid summary and counts the others as malformed."""
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.RCVTIMEO, 30_000)
    pub.bind("tcp://127.0.0.1:*")
    endpoint = pub.getsockopt_string(zmq.LAST_ENDPOINT)
    proc = subprocess.Popen(
        [*CLI, "subscribe", endpoint], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        subscribed = set()
        while len(subscribed) < 3:  # pred., hb and summary
            subscribed.add(pub.recv()[1:])
        pub.send_multipart(prediction(1))
        for frames, _ in WRONG_FIELDS:
            pub.send_multipart(frames)
        pub.send_multipart(prediction(2, final=True))
        pub.send_multipart(control("summary", published=2))
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        pub.close()
        ctx.term()
    lines = out.splitlines()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert len(lines) == 3 and "step   1" in lines[0] and "step   2" in lines[1], out
    assert lines[2].startswith("summary from p1: 2 messages published")
    assert f"malformed {len(WRONG_FIELDS)}" in err and "predictions 2" in err
    assert "seq is 'abc', not an integer" in err  # each logged with its reason


def test_subscribe_refuses_an_address_it_cannot_connect_to(capsys):
    err = error_of(capsys, ["subscribe", "not-an-address", "--timeout", "1"])
    assert "subscribe: cannot connect to 'not-an-address'" in err
    err = error_of(capsys, ["subscribe", "tcp://127.0.0.1:99999", "--timeout", "1"])
    assert "port 99999 is not in 1..65535" in err


def test_send_checks_host_port_and_coordinates_before_sending(tmp_path, capsys):
    events = np.zeros(5, dtype=EVENT_DTYPE)
    events["t"], events["x"], events["y"], events["p"] = np.arange(5) * 10, [1, 2, -3, 4, 5], 1, 1
    recording = tmp_path / "negative_x.npy"
    np.save(recording, events)
    good = tmp_path / "good.npy"
    np.save(good, events[events["x"] >= 0])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(0.5)
        port = rx.getsockname()[1]
        err = error_of(capsys, ["send", str(recording), "--port", str(port), "--no-realtime"])
        assert "negative_x.npy" in err
        with pytest.raises(ValueError, match=r"1 events have coordinates SPIF cannot carry .* x=-3"):
            send_events(events, "127.0.0.1", port, realtime=False)
        with pytest.raises(TimeoutError):  # nothing was sent
            rx.recv(65_536)
    err = error_of(capsys, ["send", str(good), "--host", "no-such-host.invalid"])
    assert "send: cannot resolve host 'no-such-host.invalid'" in err
    err = error_of(capsys, ["send", str(good), "--port", "99999"])
    assert "send: port 99999 is not a UDP port (1..65535)" in err
    started = time.monotonic()  # checked before the scenario is made
    err = error_of(capsys, ["send", "--scenario", "gaps", "--port", "99999"])
    assert "port 99999" in err and time.monotonic() - started < 30


def test_a_yaml_file_that_is_not_utf8_is_named_with_its_line(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: x\nsource: {type: digits_dvs}\n# café\n".encode("latin-1"))
    err = error_of(capsys, ["run", str(path)])
    assert f"{path}: line 3: not UTF-8 text (byte 0xe9" in err


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"arch": {"name": "lenet"}}, "arch: unknown architecture 'lenet'"),
        ({"extra": True}, "arch: digits_cnn takes no argument dropout"),
        ({"state_dict": {}}, "state_dict: no weights"),
        ({"input": None}, "input: expected a map with shape [C, H, W]"),
    ],
)
def test_broken_checkpoints_are_errors_in_run_and_convert(root, tmp_path, capsys, fields, error):
    payload = torch.load(ASSETS / "digits_dvs.pt", weights_only=True)
    if fields.pop("extra", False):
        fields["arch"] = {**payload["arch"], "dropout": 0.5}
    path = tmp_path / "broken.pt"
    torch.save({k: v for k, v in {**payload, **fields}.items() if v is not None}, path)
    pipeline = str(root / "pipelines" / "digits_dvs.yaml")
    err = error_of(capsys, ["run", pipeline, "--set", f"model.weights={path}", "--no-progress"])
    assert f"model.weights: {path}: {error}" in err
    assert f"{path}: {error}" in error_of(capsys, ["convert", str(path)])


def test_a_refused_checkpoint_does_not_pass_on_the_advice_to_load_it_unsafely(root, tmp_path, capsys):
    from tests.snn.test_checkpoint import RunsCode

    marker, path = tmp_path / "ran", tmp_path / "evil.pt"
    torch.save({"format": "streamsnn-checkpoint/1", "arch": RunsCode(marker)}, path)
    pipeline = str(root / "pipelines" / "digits_dvs.yaml")
    for argv in (["convert", str(path)], ["run", pipeline, "--set", f"model.weights={path}"]):
        err = error_of(capsys, argv)
        assert f"{path}: refused: the safe loader reads only tensors and plain containers" in err
        assert "weights_only" not in err and "trust" not in err
    assert not marker.exists()
