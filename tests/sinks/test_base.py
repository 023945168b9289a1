"""The hooks every sink has, called by the runner in their order; ``write_packet`` only for
sinks that declare ``needs_events``."""

from streamsnn.config import load_pipeline
from streamsnn.runtime import build_pipeline, run_pipeline
from streamsnn.sinks import Sink


class Calls(Sink):
    """Notes every hook called on it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")

    def write(self, pred) -> None:
        self.calls.append("write")

    def write_packet(self, packet, sensor) -> None:
        self.calls.append("packet")

    def finish(self, report) -> None:
        self.calls.append(f"finish {report['samples']}")

    def close(self) -> None:
        self.calls.append("close")


class EventCalls(Calls):
    needs_events = True


class Quiet(Sink):
    """Only ``write``: every other hook is the base's."""

    def write(self, pred) -> None:
        pass


def test_the_runner_calls_every_hook_in_order(root):
    overrides = ["source.limit=2", "runtime.progress=false", "sinks=[]", "report.path=null"]
    pipe = build_pipeline(load_pipeline(root / "pipelines" / "digits_dvs.yaml", overrides))
    plain, events, quiet = Calls(), EventCalls(), Quiet()
    pipe.sinks += [plain, events, quiet]
    result = run_pipeline(pipe)
    assert plain.calls[0] == "start" and plain.calls[-2:] == ["finish 2", "close"]
    assert "packet" not in plain.calls and plain.calls.count("write") == sum(o.steps for o in result.outcomes)
    assert events.calls.count("packet") == 2  # one packet per replayed sample
    assert quiet.endpoint is None and not quiet.needs_events
