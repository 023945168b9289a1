from pathlib import Path

import pytest
import yaml

from streamsnn.config import PIPELINES, ConfigError, load_pipeline, load_train_config


def write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = """
source: {type: digits_dvs, split: val, limit: 4}
slicing: {time_window_us: 20000}
encoder: {type: event_rate}
policy: {exit: {type: confidence, threshold: 0.9}}
"""


def test_the_shipped_pipelines_and_configs_validate(root):
    for path in sorted((root / "pipelines").glob("*.yaml")):
        load_pipeline(path)
    for path in sorted((root / "configs").glob("*.yaml")):
        load_train_config(path)


def test_a_shipped_pipeline_writes_in_its_run_folder_and_training_never_into_the_package(root):
    """One folder per pipeline, runs/<name>/ (calibrate and evaluate default to it), named as its
    file; a training config writes runs/train/<config name>.pt unless it names an output."""
    for path in sorted((root / "pipelines").glob("*.yaml")):
        cfg = load_pipeline(path)
        assert cfg.name == path.stem and str(cfg.run_dir) == f"runs/{path.stem}"
        written = [cfg.report.path, *(getattr(s, "path", None) for s in cfg.sinks)]
        for file in filter(None, written):
            assert Path(file).parent == cfg.run_dir, (path.name, file)
    for path in sorted((root / "configs").glob("*.yaml")):
        cfg = load_train_config(path)
        assert cfg.output is None, path.name  # runs/train/<name>.pt
        for other in (cfg.train.init_from, cfg.pipeline):
            assert other is None or other.startswith(("runs/train/", "pipelines/")), (path.name, other)


@pytest.mark.parametrize("name", ["../elsewhere", "..", "a b", ""])
def test_a_pipeline_name_is_a_folder_name(tmp_path, name):
    with pytest.raises(ConfigError, match="name"):
        load_pipeline(write(tmp_path, GOOD), [f"name={name!r}"])


def test_defaults_and_overrides(tmp_path):
    cfg = load_pipeline(
        write(tmp_path, GOOD),
        ["policy.exit.threshold=0.5", "runtime.batch_size=3", "sinks=[{type: console}]"],
    )
    assert cfg.policy.exit.threshold == 0.5 and cfg.runtime.batch_size == 3
    assert cfg.model.weights == "builtin:digits_dvs" and cfg.sinks[0].type == "console"


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "source: {type: digits_dvs\nslicing: [\n")
    with pytest.raises(ConfigError, match=r"p\.yaml: line \d+, column \d+: malformed YAML"):
        load_pipeline(path)


def test_unknown_key_names_file_and_field(tmp_path):
    path = write(tmp_path, GOOD + "runtime: {batch_size: 4, turbo: true}\n")
    with pytest.raises(ConfigError, match=r"p\.yaml: runtime\.turbo: unknown key"):
        load_pipeline(path)


def test_bad_value_names_field_and_value(tmp_path):
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError, match=r"policy\.exit\.threshold: .*less than or equal to 1.*1\.5"):
        load_pipeline(path, ["policy.exit.threshold=1.5"])
    with pytest.raises(ConfigError, match=r"source\.split: .*'dev'"):
        load_pipeline(path, ["source.split=dev"])


def test_unknown_type_names_the_choices(tmp_path):
    path = write(tmp_path, GOOD.replace("type: digits_dvs", "type: webcam9"))
    with pytest.raises(ConfigError, match=r"source: .*'digits_dvs', 'digits_frames'"):
        load_pipeline(path)


def test_slicing_needs_exactly_one_option(tmp_path):
    path = write(
        tmp_path, GOOD.replace("{time_window_us: 20000}", "{time_window_us: 20000, event_count: 50}")
    )
    with pytest.raises(ConfigError, match=r"slicing: .*exactly one of time_window_us"):
        load_pipeline(path)


def test_missing_section_and_bad_override(tmp_path):
    path = write(tmp_path, GOOD.replace("encoder: {type: event_rate}\n", ""))
    with pytest.raises(ConfigError, match=r"p\.yaml: encoder: Field required"):
        load_pipeline(path)
    with pytest.raises(ConfigError, match="expected key=value"):
        load_pipeline(write(tmp_path, GOOD, "q.yaml"), ["policy.exit.threshold"])


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_pipeline(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_pipeline(tmp_path / "missing.yaml")


def test_yaml_tags_that_build_objects_are_refused(tmp_path):
    path = write(tmp_path, GOOD + "name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_pipeline(path)


def test_error_paths_leave_out_the_tags_of_union_members(tmp_path):
    path = write(tmp_path, GOOD)
    cases = {
        "source={type: camera, camera: sony}": "source.camera: Input should be 'inivation' or 'prophesee'",
        "source={type: streams, sources: [{type: digits_dvs, live: true}, {type: udp, packet_us: 0}]}": (
            "source.sources.1.packet_us: Input should be greater than 0"
        ),
        "source={type: streams, sources: [{type: udp, sensor: dvs128, colour: red}]}": (
            "source.sources.0.colour: unknown key"
        ),
        "sinks=[{type: console}, {type: jsonl}]": "sinks.1.path: Field required",
        "policy.reset={type: periodic, every_steps: 0}": "policy.reset.every_steps: Input should be greater",
        "model.alpha=-1": "model.alpha: Input should be greater than 0",
    }
    for override, message in cases.items():
        with pytest.raises(ConfigError) as err:
            load_pipeline(path, [override])
        assert f"p.yaml: {message}" in str(err.value), (override, str(err.value))


@pytest.mark.parametrize(
    ("broken", "fix"),
    [
        ("policy.exit.threshold=1.5", "0.5"),
        ("source={type: streams, sources: [{type: udp, sensor: dvs128, port: 0, packet_us: -5}]}", "2000"),
        ("sinks=[{type: console}, {type: zmq, hwm: -1}]", "0"),
        ("policy.reset={type: decay, factor: 2}", "0.5"),
        ("encoder={type: event_rate, rate_unit_us: 0}", "1000"),
        ("source={type: recording, path: x.npy, mode: replay}", "sample"),
    ],
)
def test_set_accepts_the_path_an_error_names(tmp_path, broken, fix):
    """The path an error prints is a key ``--set`` takes: setting it to a good value loads."""
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError) as err:
        load_pipeline(path, [broken])
    key = str(err.value).split(": ")[1]
    cfg = load_pipeline(path, [broken, f"{key}={fix}"])
    node = cfg
    for part in key.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    assert node == yaml.safe_load(fix)


def test_a_reset_policy_may_be_named_alone(tmp_path):
    path = write(tmp_path, GOOD)
    assert load_pipeline(path).policy.reset.type == "on_exit"
    assert load_pipeline(path, ["policy.reset=decay"]).policy.reset.factor == 0.9
    with pytest.raises(ConfigError, match=r"policy\.reset\.every_steps: Field required"):
        load_pipeline(path, ["policy.reset=periodic"])


def test_every_option_is_described():
    """Every option of every registered plug-in and of every pipeline section has a description."""
    from streamsnn.config import (
        ModelConfig,
        PipelineConfig,
        PolicyConfig,
        RayConfig,
        ReportConfig,
        RuntimeConfig,
    )
    from streamsnn.encoding import ENCODERS
    from streamsnn.policies import EXIT_POLICIES, RESET_POLICIES
    from streamsnn.sinks import SINKS
    from streamsnn.slicing import SlicingConfig
    from streamsnn.sources import SOURCES

    kinds = (SOURCES, ENCODERS, EXIT_POLICIES, RESET_POLICIES, SINKS)
    models = [registry.options(name) for registry in kinds for name in registry.names]
    models += [
        PipelineConfig,
        SlicingConfig,
        ModelConfig,
        PolicyConfig,
        RuntimeConfig,
        ReportConfig,
        RayConfig,
    ]
    for model in models:
        for name, field in model.model_fields.items():
            assert name == "type" or field.description, f"{model.__name__}.{name} has no description"


def test_builtin_names_a_shipped_pipeline(root):
    shipped = sorted(p.name for p in PIPELINES.glob("*.yaml"))
    assert shipped == sorted(p.name for p in (root / "pipelines").glob("*.yaml"))
    assert load_pipeline("builtin:digits_dvs") == load_pipeline(root / "pipelines" / "digits_dvs.yaml")
    with pytest.raises(
        ConfigError, match=r"unknown pipeline 'builtin:digits'; shipped: .*builtin:digits_dvs, "
    ):
        load_pipeline("builtin:digits")
