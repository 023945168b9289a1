"""``executor: ray`` on a local Ray instance with 2 workers: the same per-sample predictions and
report as the local executor, and a worker killed mid-replay costs no sample and counts none twice."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import signal
import socket
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import ray

from streamsnn.config import ConfigError, load_pipeline
from streamsnn.runtime import build_pipeline, run_pipeline
from streamsnn.runtime.ray_executor import init_local, run_on_ray
from streamsnn.sinks import Sink
from streamsnn.sources.udp import send_events
from tests.sinks.test_zeromq import ZMQ, Collector
from tests.sources.test_streams import live, streams_config
from tests.sources.test_udp import CLASS, digit_stream

SAMPLES = 40
# outcome-derived report fields: equal to the local run's; the rest are timings and counters of
# the run itself (wall time, batch occupancy, latencies)
SAME = (
    *("samples", "labelled", "accuracy", "accuracy_full_T", "accuracy_ann", "mean_steps", "max_steps"),
    *("mean_steps_full_T", "step_saving", "exit_reasons", "spikes_per_sample", "policy", "pipeline"),
    *("dropped_slices", "skipped_slices", "out_of_bounds_events", "late_events", "source_stats"),
)


@pytest.fixture(scope="module")
def local_ray():
    init_local(ray, 2)  # as executor: ray starts one: on 127.0.0.1 only
    yield
    ray.shutdown()


def config(root: Path, out: Path, *overrides: str):
    return load_pipeline(
        root / "pipelines" / "digits_dvs.yaml",
        [
            "runtime.progress=false",
            "report.path=null",
            f"source.limit={SAMPLES}",
            "runtime.batch_size=8",
            f"sinks=[{{type: jsonl, path: {out}}}]",
            "ray.samples_per_task=6",
            *overrides,
        ],
    )


def by_sample(path: Path) -> dict[int, list[tuple]]:
    """Each sample's predictions in step order: (step, class, final, reason, confidence)."""
    preds = defaultdict(list)
    for line in path.read_text().splitlines():
        p = json.loads(line)
        preds[p["sample"]].append((p["step"], p["class"], p["final"], p["reason"], p["confidence"]))
    return {s: sorted(ps) for s, ps in preds.items()}


def decisions(result) -> list[tuple]:
    return [(o.sample, o.label, o.cls, o.steps, o.reason, o.cls_full_t, o.cls_ann) for o in result.outcomes]


def assert_same_predictions(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected) == list(range(SAMPLES))
    for sample, preds in expected.items():
        assert [p[:4] for p in got[sample]] == [p[:4] for p in preds], sample
        assert [p[4] for p in got[sample]] == pytest.approx([p[4] for p in preds], abs=1e-5)


def test_ray_replay_gives_the_local_predictions_and_report(root, tmp_path, local_ray):
    local = run_pipeline(build_pipeline(config(root, tmp_path / "local.jsonl")))
    distributed = run_on_ray(build_pipeline(config(root, tmp_path / "ray.jsonl", "executor=ray")))
    assert decisions(distributed) == sorted(decisions(local))
    assert_same_predictions(by_sample(tmp_path / "ray.jsonl"), by_sample(tmp_path / "local.jsonl"))
    assert set(distributed.report) - {"workers_start_s"} == set(local.report)
    for key in SAME:
        assert distributed.report[key] == local.report[key], key
    assert distributed.report["workers"] == 2 and distributed.report["executor"] == "ray"
    assert ray.is_initialized()  # an instance the caller started is left running


class KillOneWorker(Sink):
    """A sink that kills one replay worker process (SIGKILL) when the first range arrives."""

    def __init__(self) -> None:
        self.killed: int | None = None

    def write(self, pred) -> None:
        if self.killed is None:
            self.killed = next(iter(worker_pids()))
            os.kill(self.killed, signal.SIGKILL)


def worker_pids(actor: str = "ReplayWorker") -> list[int]:
    """Processes of this machine whose title Ray set to ``ray::<actor>``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(f"ray::{actor}".encode()):
                pids.append(int(entry.name))
    return pids


def test_a_worker_killed_mid_replay_loses_no_sample_and_counts_none_twice(root, tmp_path, local_ray):
    expected = run_pipeline(build_pipeline(config(root, tmp_path / "local.jsonl")))
    pipe = build_pipeline(config(root, tmp_path / "ray.jsonl", "executor=ray"))
    killer = KillOneWorker()
    pipe.sinks.append(killer)
    result = run_on_ray(pipe)
    assert killer.killed is not None and killer.killed not in worker_pids()
    assert [o.sample for o in result.outcomes] == list(range(SAMPLES))  # each exactly once
    assert decisions(result) == sorted(decisions(expected))
    assert_same_predictions(by_sample(tmp_path / "ray.jsonl"), by_sample(tmp_path / "local.jsonl"))
    assert result.report["accuracy"] == expected.report["accuracy"]


def test_ray_refuses_what_it_cannot_shard(root, tmp_path):
    paced = config(root, tmp_path / "p.jsonl", "executor=ray", "runtime.realtime=true")
    with pytest.raises(ConfigError, match=r"set runtime\.realtime: false"):
        run_on_ray(build_pipeline(paced))
    streams = streams_config(root, [live(0), live(5), live(9)], "executor=ray", "runtime.batch_size=1")
    with pytest.raises(ConfigError, match=r"ray.streams_per_worker: 2 streams per worker need runtime"):
        run_on_ray(build_pipeline(streams))
    recorder = f"sinks=[{{type: record, path: {tmp_path}/r.aedat4}}]"
    record = config(root, tmp_path / "p.jsonl", "executor=ray", recorder)
    with pytest.raises(ConfigError, match=r"sinks\[0\]: record writes the events"):
        run_on_ray(build_pipeline(record))


def test_ray_checks_devices_and_the_clusters_resources_before_starting_workers(root, tmp_path, local_ray):
    out = tmp_path / "p.jsonl"
    too_many = config(root, out, "executor=ray", "ray.workers=3")  # the local instance has 2 CPUs
    with pytest.raises(ConfigError, match=r"ray\.cpus: 3 workers × 1 CPUs need 3, but the Ray cluster has 2"):
        run_on_ray(build_pipeline(too_many))
    gpus = config(root, out, "executor=ray", "ray.gpus=0.5")
    needs_gpus = r"ray\.gpus: 2 workers × 0\.5 GPUs need 1, but the Ray cluster has 0"
    with pytest.raises(ConfigError, match=needs_gpus):
        run_on_ray(build_pipeline(gpus))
    pipe = build_pipeline(config(root, out, "executor=ray", "model.device=cuda"))
    assert pipe.operator.device.type == "cpu"  # the driver only checks the pipeline (no GPU here)
    with pytest.raises(ConfigError, match=r"ray\.gpus: model\.device is 'cuda' but each worker gets no GPU"):
        run_on_ray(pipe)


def test_run_command_takes_executor_ray(root, tmp_path, local_ray, capsys):
    from streamsnn.cli import main

    report = tmp_path / "report.json"
    args = ["run", str(root / "pipelines" / "digits_dvs.yaml"), "--executor", "ray", "--no-progress"]
    args += ["--set", "source.limit=12", "--set", "ray.samples_per_task=4", "--set", "sinks=[]"]
    args += ["--report", str(report)]
    assert main(args) == 0
    written = json.loads(report.read_text())
    assert written["executor"] == "ray" and written["samples"] == 12 and written["workers"] == 2
    assert "accuracy (early exit)" in capsys.readouterr().out


def test_calibrate_and_evaluate_commands_take_executor_ray(root, tmp_path, local_ray, capsys):
    from streamsnn.cli import main

    def commands(executor: str) -> tuple[dict, dict]:
        out = tmp_path / executor
        sets = ["--set", "source.limit=24", "--no-progress", "--executor", executor]
        cal = out / "cal.json"
        assert main(["calibrate", "pipelines/digits_dvs.yaml", *sets, "--output", str(cal)]) == 0
        args = ["--calibration", str(cal), "--output-dir", str(out)]
        assert main(["evaluate", "pipelines/digits_dvs.yaml", *sets, *args]) == 0
        return json.loads(cal.read_text()), json.loads((out / "evaluation.json").read_text())

    (local_cal, local_rows), (ray_cal, ray_rows) = commands("local"), commands("ray")
    assert ray_cal.pop("temperature") == pytest.approx(local_cal.pop("temperature"), rel=1e-6)
    assert ray_cal == local_cal

    def results(rows):  # the configs differ only in the calibration file's path
        return [{k: v for k, v in r.items() if k != "config"} for r in rows]

    assert results(ray_rows["rows"]) == results(local_rows["rows"]) and len(ray_rows["rows"]) >= 3
    assert "Dynamic Confidence" in capsys.readouterr().out


@pytest.mark.parametrize("name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_stop_signal_ends_live_streams_on_ray_and_still_reports(root, tmp_path, name, code):
    """SIGINT or SIGTERM (for which Ray's init sets a handler of its own) to ``streamsnn run
    --executor ray`` (its own local Ray instance): every group's streams end, open decisions
    close, and the report of what was decided is written (exit 130 or 143)."""
    import subprocess
    import sys

    sources = ", ".join(live(offset).replace("limit: 2", "limit: 40") for offset in (0, 100))  # 12 s
    out, report = tmp_path / "preds.jsonl", tmp_path / "report.json"
    args = ["run", "pipelines/digits_dvs.yaml", "--executor", "ray", "--no-progress", "--report", str(report)]
    sets = [f"source={{type: streams, sources: [{sources}]}}", "ray.streams_per_worker=1"]
    sets += [f"sinks=[{{type: jsonl, path: '{out}'}}]", "policy.reset=on_exit"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamsnn.cli", *args, *(a for s in sets for a in ("--set", s))],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            lines = out.read_text().splitlines() if out.exists() else []
            decided = Counter(p["stream"] for p in map(json.loads, lines[:-1]) if p["final"])
            if len(decided) == 2 and min(decided.values()) >= 2:  # both streams under way
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        proc.send_signal(getattr(signal, name))
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr[-3000:]
    assert "Traceback" not in stderr
    written = json.loads(report.read_text())
    assert written["interrupted"] and written["executor"] == "ray" and written["workers"] == 2
    preds = [json.loads(line) for line in out.read_text().splitlines()]
    finals = [p for p in preds if p["final"]]
    assert written["samples"] == len(finals) >= 4  # every decision written is in the report
    # stopped long before the streams' end, each stream's open decision closed at the stop: its
    # last prediction is a final one
    last = {p["stream"]: p for p in preds}
    assert sorted(last) == ["digits-dvs/test/live#0", "digits-dvs/test/live#1"]
    assert all(p["final"] for p in last.values()), last
    assert max(p["t_end_us"] for p in preds) < 40 * 300_000 / 2


def descendants(pid: int) -> set[int]:
    """``pid`` and every process started under it (from /proc)."""
    children = defaultdict(set)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            children[int(stat.rsplit(")", 1)[1].split()[1])].add(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        found.add(p)
        todo.extend(children[p] - found)
    return found


def open_ports(pids: set[int]) -> list[tuple[int, str, ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """(pid, protocol, local address) of every listening TCP socket and bound UDP socket held by
    ``pids`` (from /proc/net and the processes' file descriptors)."""
    inodes = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes[int(link[8:-1])] = pid
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
            fields = line.split()
            inode, state, local = int(fields[9]), fields[3], fields[1].split(":")[0]
            if inode not in inodes or (proto.startswith("tcp") and state != "0A"):  # 0A: LISTEN
                continue
            raw = bytes.fromhex(local)  # 32-bit words in host (little-endian) order
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append((inodes[inode], proto, ipaddress.ip_address(raw)))
    return found


def is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def test_a_local_ray_instance_listens_on_loopback_only(root, tmp_path):
    """``streamsnn run --executor ray`` starts its own Ray (GCS, raylet, agents, workers): while
    it runs, no socket of it or of any process under it listens on anything but loopback."""
    import subprocess
    import sys

    out = tmp_path / "preds.jsonl"
    args = ["run", "pipelines/digits_dvs.yaml", "--executor", "ray", "--no-progress"]
    sets = [f"source={{type: streams, sources: [{live(0).replace('limit: 2', 'limit: 40')}]}}"]
    sets += ["ray.workers=1", f"sinks=[{{type: jsonl, path: '{out}'}}]", "policy.reset=on_exit"]
    sets.append("report.path=null")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamsnn.cli", *args, *(a for s in sets for a in ("--set", s))],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if out.exists() and out.stat().st_size:
                break
            time.sleep(0.1)  # until the worker's predictions reach the driver's sink
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        ports = open_ports(descendants(proc.pid))
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    listening = [p for p in ports if p[1].startswith("tcp")]
    assert len(listening) >= 4, ports  # the GCS, the raylet's servers, the driver and worker
    assert all(is_loopback(address) for _, _, address in ports), ports


def test_calibrate_and_evaluate_on_ray_equal_the_local_executor(root, tmp_path, local_ray):
    """Both collect per-step outputs through run_pipeline, so executor: ray shards them too: the
    same collected outputs, the same calibration and the same evaluation rows."""
    import numpy as np

    from streamsnn.lab.calibrate import calibrate
    from streamsnn.lab.evaluate import evaluate

    def chosen(*overrides):
        cfg = config(root, tmp_path / "unused.jsonl", "sinks=[]", *overrides)
        cal, _, val = calibrate(cfg, "val", resolution=1e-3, progress=False)
        path = cal.save(tmp_path / f"cal_{cfg.executor}.json")
        ev = evaluate(cfg, "test", path, progress=False)
        rows = [(r.method, r.exits.steps.tolist(), r.exits.reasons) for r in ev.rows]
        return cal, val, rows, ev.summary

    local, distributed = chosen(), chosen("executor=ray")
    # the ANN reference runs per shard, in other batches: its logits, and so the fitted
    # temperature, agree to float rounding; threshold, accuracy, steps and front exactly
    cal = dataclasses.asdict(distributed[0])
    assert cal.pop("temperature") == pytest.approx(local[0].temperature, rel=1e-6)
    assert cal == {k: v for k, v in dataclasses.asdict(local[0]).items() if k != "temperature"}
    a, b = distributed[1], local[1]  # the collected validation outputs
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.spikes, b.spikes)
    # other batch companions: the last layer's matrix product may round the last bit otherwise
    np.testing.assert_allclose(a.outputs, b.outputs, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(a.ann_logits, b.ann_logits, rtol=1e-5, atol=1e-5)
    assert distributed[2] == local[2] and distributed[3] == local[3]


def per_stream(outcomes) -> dict[str, list[tuple]]:
    """Each stream's decisions in order: (sample, label, class, steps, reason)."""
    got = defaultdict(list)
    for o in outcomes:
        got[o.stream].append((o.sample, o.label, o.cls, o.steps, o.reason))
    return {stream: sorted(d) for stream, d in got.items()}


def test_live_streams_run_one_worker_per_group_merged_onto_one_zmq_feed(root, tmp_path, local_ray):
    sources = [live(offset) for offset in (0, 5, 9, 14)]
    expected = per_stream(run_pipeline(build_pipeline(streams_config(root, sources))).outcomes)
    out = tmp_path / "ray.jsonl"
    sinks = f"sinks=[{ZMQ}, hwm: 0, wait_for_subscribers: 1}}, {{type: jsonl, path: '{out}'}}]"
    pipe = build_pipeline(streams_config(root, sources, "executor=ray", "ray.streams_per_worker=2", sinks))
    collector = Collector(pipe.sinks[0].endpoint, hwm=0)
    collector.start()
    result = run_pipeline(pipe)  # starts once the subscription has arrived
    collector.join(30)
    report = result.report
    assert (report["executor"], report["workers"], report["worker_restarts"]) == ("ray", 2, 0)
    assert report["dropped_slices"] == report["skipped_slices"] == 0
    assert per_stream(result.outcomes) == expected and len(expected) == 4
    # one feed: every stream's predictions, as the JSONL sink beside it got them
    feed = [m.data for m in collector.messages]
    written = [json.loads(line) for line in out.read_text().splitlines()]
    keys = ("stream", "sample", "step", "class", "final", "reason")
    assert [[p[k] for k in keys] for p in feed] == [[p[k] for k in keys] for p in written]
    finals = defaultdict(list)
    for p in feed:
        if p["final"]:
            finals[p["stream"]].append((p["sample"], p["label"], p["class"], p["step"], p["reason"]))
    assert finals == expected
    assert collector.summary.data["report"]["samples"] == report["samples"]


class KillOneStreamWorker(Sink):
    """A sink that kills one live worker process (SIGKILL) once both streams have decided."""

    def __init__(self) -> None:
        self.decided: set[str] = set()
        self.killed: int | None = None

    def write(self, pred) -> None:
        self.decided |= {pred.stream} if pred.final else set()
        if self.killed is None and len(self.decided) == 2:
            self.killed = next(iter(worker_pids("StreamWorker")))
            os.kill(self.killed, signal.SIGKILL)


def test_a_live_worker_that_dies_restarts_with_its_group_and_keeps_its_decisions(root, local_ray):
    """The killed worker's group starts again (digits-dvs played live starts from its beginning):
    its decisions before the kill stay, the ones after are numbered on from them."""
    sources = [live(offset).replace("limit: 2", "limit: 3") for offset in (0, 5)]
    expected = per_stream(run_pipeline(build_pipeline(streams_config(root, sources))).outcomes)
    pipe = build_pipeline(streams_config(root, sources, "executor=ray", "ray.streams_per_worker=1"))
    killer = KillOneStreamWorker()
    pipe.sinks.append(killer)
    result = run_pipeline(pipe)
    assert killer.killed is not None and result.report["worker_restarts"] == 1
    got = per_stream(result.outcomes)
    kept = {stream: len(got[stream]) - len(expected[stream]) for stream in expected}
    assert sorted(kept.values())[0] == 0 and sorted(kept.values())[1] >= 1  # one group restarted
    for stream, before in kept.items():
        again = [(sample + before, *rest) for sample, *rest in expected[stream]]
        assert got[stream] == expected[stream][:before] + again, stream


class Started(Sink):
    """A sink whose ``start`` (called once every worker has built its pipeline, so its sockets
    are bound) sets ``event``."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def start(self) -> None:
        self.event.set()

    def write(self, pred) -> None:
        pass


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_udp_feeds_on_ray_workers_reach_the_drivers_sinks(root, tmp_path, local_ray):
    """Two senders stream digits over real UDP sockets to two Ray workers, one feed each."""
    ports = [free_udp_port(), free_udp_port()]
    udp = "{{type: udp, port: {}, sensor: digits_dvs, stop_after_silence_s: 3}}"
    out = tmp_path / "ray.jsonl"
    cfg = streams_config(
        root,
        [udp.format(port) for port in ports],
        "executor=ray",
        "ray.streams_per_worker=1",
        f"sinks=[{{type: jsonl, path: '{out}'}}]",
    )
    pipe = build_pipeline(cfg)
    started = Started()
    pipe.sinks.append(started)
    events = digit_stream(3)  # 0.9 s of sensor time each
    sent: list[int] = []
    ended: list[float] = []  # when each sender finished (wall clock, s)

    def send(port: int) -> None:
        if started.event.wait(120):
            sent.append(send_events(events, "127.0.0.1", port, realtime=True))
            ended.append(time.time())

    senders = [threading.Thread(target=send, args=(port,), daemon=True) for port in ports]
    for sender in senders:
        sender.start()
    result = run_pipeline(pipe)
    for sender in senders:
        sender.join(10)
    assert sent == [len(events)] * 2
    stats = result.report["source_stats"]  # summed over both workers' sources
    assert stats["events"] == 2 * len(events) and stats["stopped_after_silence"] == 2
    preds = [json.loads(line) for line in out.read_text().splitlines()]
    names = {f"udp/127.0.0.1:{port}#{i}" for i, port in enumerate(ports)}
    assert {p["stream"] for p in preds if p["final"]} == names
    for name in names:  # each feed's digits came through whole: mostly decided as the class sent
        streamed = [p for p in preds if p["stream"] == name and p["emit_time"] <= max(ended)]
        votes = Counter(p["class"] for p in streamed if p["final"])
        assert votes.most_common(1)[0][0] == CLASS, votes
    assert result.report["samples"] == sum(p["final"] for p in preds) and result.report["workers"] == 2


def test_workers_resolve_relative_paths_from_the_drivers_directory(root, tmp_path, local_ray, monkeypatch):
    import shutil

    shutil.copy(root / "streamsnn" / "assets" / "digits_dvs.pt", tmp_path / "weights.pt")
    monkeypatch.chdir(tmp_path)
    cfg = config(root, tmp_path / "p.jsonl", "executor=ray", "model.weights=weights.pt", "source.limit=8")
    result = run_pipeline(build_pipeline(cfg))
    assert [o.sample for o in result.outcomes] == list(range(8)) and result.report["executor"] == "ray"


def test_the_core_does_not_import_ray():
    import subprocess
    import sys

    modules = "streamsnn.cli, streamsnn.runtime, streamsnn.lab.calibrate, streamsnn.lab.evaluate"
    code = f"import sys, {modules}; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
