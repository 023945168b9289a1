"""The console sink on real runs: a replay prints every n-th final prediction, a live run every
final decision (and every n-th of the others)."""

from streamsnn.config import load_pipeline
from streamsnn.runtime import build_pipeline, run_pipeline


def run_printing(root, capsys, *overrides):
    """A digits-dvs run with only a console sink; its report and the lines it printed."""
    cfg = load_pipeline(
        root / "pipelines" / "digits_dvs.yaml",
        ["runtime.progress=false", "report.path=null", "runtime.full_t=false", *overrides],
    )
    capsys.readouterr()
    report = run_pipeline(build_pipeline(cfg)).report
    return report, [line for line in capsys.readouterr().err.splitlines() if " step " in line]


def test_a_replay_prints_every_nth_final_prediction(root, capsys):
    report, lines = run_printing(root, capsys, "source.limit=40", "sinks=[{type: console, every: 10}]")
    assert report["samples"] == 40 and len(lines) == 4
    assert all("final/" in line for line in lines)


def test_a_live_run_prints_every_final_decision(root, capsys):
    live = ["source={type: digits_dvs, live: true, limit: 4}"]
    report, lines = run_printing(root, capsys, *live, "sinks=[{type: console, every: 30}]")
    finals = [line for line in lines if "final/" in line]
    assert report["stream_run"] and len(finals) == len(lines) == report["decisions"] >= 4
    # the others (final_only: false) thinned to every n-th: all predictions minus the finals
    report, lines = run_printing(root, capsys, *live, "sinks=[{type: console, every: 7, final_only: false}]")
    finals = [line for line in lines if "final/" in line]
    others = report["predictions"] - report["decisions"]
    assert len(finals) == report["decisions"] and len(lines) - len(finals) == -(-others // 7)
