import pytest

from streamsnn.config import ConfigError, load_pipeline, load_train_config


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
