"""Edge node config files: a wrong value is one error naming the field, before any frame is read."""

import pytest

from edge.node.config import EdgeConfigError, build_config


def _yaml(tmp_path, extra: str):
    y = tmp_path / "edge.yaml"
    y.write_text("camera_id: cam-1\nagency_id: sac-pd\nsource: v.mp4\n" + extra)
    return y


@pytest.mark.parametrize("value", ["5", "true", "[5]", "{a: 1}", "[models/ocr.onnx, 7]"])
def test_ocr_model_of_the_wrong_type_names_the_field(tmp_path, value):
    # before: model_paths raised TypeError, which pydantic does not catch: a traceback
    with pytest.raises(EdgeConfigError, match="field 'ocr_model'"):
        build_config(_yaml(tmp_path, f"ocr_model: {value}\n"))


def test_ocr_model_forms_that_are_right_still_load(tmp_path):
    assert len(build_config(_yaml(tmp_path, "ocr_model: a.onnx,b.onnx\n")).ocr_model) == 2
    assert len(build_config(_yaml(tmp_path, "ocr_model: [a.onnx, b.onnx]\n")).ocr_model) == 2
    assert len(build_config(_yaml(tmp_path, "ocr_model: a.onnx\n")).ocr_model) == 1


@pytest.mark.parametrize("value", ["[91, 0]", "[0, -181]", "[.nan, 0]", "[0, .inf]"])
def test_location_out_of_range_is_refused_with_the_config(tmp_path, value):
    # before: accepted, and the node stopped at its first read ("invalid Location"), mid-run
    with pytest.raises(EdgeConfigError, match="field 'location"):
        build_config(_yaml(tmp_path, f"location: {value}\n"))
    assert build_config(_yaml(tmp_path, "location: [37.8, -122.27]\n")).location == (37.8, -122.27)


def test_a_field_written_like_its_flag_says_how_to_write_it(tmp_path):
    with pytest.raises(EdgeConfigError, match="'camera-id'.*'camera_id'"):
        build_config(_yaml(tmp_path, "camera-id: cam-2\n"))


def test_a_field_given_twice_is_refused_not_the_last_taken(tmp_path):
    # before: YAML kept the second value silently (a camera published under the wrong id)
    with pytest.raises(EdgeConfigError, match=r"duplicate key 'camera_id' \(line 4"):
        build_config(_yaml(tmp_path, "camera_id: cam-2\n"))


def test_a_yaml_syntax_error_is_one_line_with_its_place(tmp_path):
    with pytest.raises(EdgeConfigError) as err:
        build_config(_yaml(tmp_path, "min_confidence: 0.5\n  track_timeout_s: 2\n"))
    assert "\n" not in str(err.value) and "line 5" in str(err.value) and "edge.yaml" in str(err.value)
