"""Mapping files: JSON or YAML, one reader, errors that name the file."""

from __future__ import annotations

import os
from importlib import resources

import pytest

from staytuned._util.mapping import load_data, parse_text, read_mapping
from staytuned.errors import InputError


def test_yaml_and_json_mappings(tmp_path):
    (tmp_path / "c.yaml").write_text("learning_rate: 1.0e-4\nepochs: 2\n")
    (tmp_path / "c.json").write_text('{"learning_rate": 0.0001}')
    assert read_mapping(tmp_path / "c.yaml") == {"learning_rate": 1e-4, "epochs": 2}
    assert read_mapping(str(tmp_path / "c.json")) == {"learning_rate": 1e-4}


def test_unwrap_a_config_key_or_a_dotted_path(tmp_path):
    (tmp_path / "r.yaml").write_text("config: {lora_r: 8}\nscore: 0.9\n")
    assert read_mapping(tmp_path / "r.yaml", unwrap="config") == {"lora_r": 8}
    assert read_mapping(tmp_path / "r.yaml") == {"config": {"lora_r": 8}, "score": 0.9}
    (tmp_path / "t.json").write_text('{"best": {"config": {"temperature": 0.7}}}')
    assert read_mapping(tmp_path / "t.json", unwrap="best.config") == {"temperature": 0.7}
    assert read_mapping(tmp_path / "r.yaml", unwrap="best.config")["score"] == 0.9


def test_empty_file(tmp_path):
    (tmp_path / "e.yaml").write_text("")
    assert read_mapping(tmp_path / "e.yaml", allow_empty=True) == {}
    with pytest.raises(InputError, match="must hold a mapping"):
        read_mapping(tmp_path / "e.yaml")


@pytest.mark.parametrize(("name", "text", "message"), [
    ("missing.yaml", None, "config file not found"),
    ("list.yaml", "- 1\n- 2\n", "the config file must hold a mapping"),
    ("bad.yaml", "a: [1\n", "not valid YAML"),
    ("bad.json", "{nope", "not valid JSON"),
    ("latin.yaml", b"a: \xff\n", "not UTF-8"),
])
def test_errors_name_the_file_in_one_line(tmp_path, name, text, message):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(InputError, match=message) as exc:
        read_mapping(path, what="config file", expected="HP names to values")
    assert exc.value.file == str(path)
    assert "\n" not in str(exc.value)


def test_a_folder_is_not_a_file(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        load_data(tmp_path, what="space file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file(tmp_path):
    path = tmp_path / "secret.yaml"
    path.write_text("a: 1\n")
    path.chmod(0)
    try:
        with pytest.raises(InputError, match="cannot read the file"):
            read_mapping(path)
    finally:
        path.chmod(0o644)


def test_name_overrides_the_path_and_resources_work():
    res = resources.files("staytuned") / "presets" / "spaces" / "demo.yaml"
    data = load_data(res, name="preset:demo")
    assert isinstance(data, dict) and "params" in data
    with pytest.raises(InputError) as exc:
        parse_text("a: [", name="preset:x")
    assert exc.value.file == "preset:x" and "line 1" in str(exc.value)
