"""Atomic writes: the whole new content or the old one, never half; no temporary file left."""

from __future__ import annotations

import pytest

from staytuned._util.io import (
    atomic_dir,
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    temp_name,
)


def test_write_text_and_bytes_create_parents_and_replace(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    assert atomic_write_text(target, "one\n") == target
    assert target.read_text() == "one\n"
    atomic_write_text(target, "two\n", fsync=True)
    assert target.read_text() == "two\n"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target, newline="") as fh:
        fh.write("half a ")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_atomic_path_for_writers_that_want_a_name(tmp_path):
    target = tmp_path / "fig.png"
    with atomic_path(target, fsync=True) as tmp:
        assert tmp.parent == tmp_path and tmp != target and not tmp.exists()
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"


def test_temporary_names_are_unique_and_beside_the_target(tmp_path):
    names = {temp_name(tmp_path / "x.json") for _ in range(50)}
    assert len(names) == 50
    assert all(n.parent == tmp_path and n.name.startswith("x.json.") and n.suffix == ".tmp"
               for n in names)


def test_atomic_open_refuses_appending(tmp_path):
    with pytest.raises(ValueError, match="mode"), atomic_open(tmp_path / "x", "a"):
        pass


def test_atomic_dir_renames_a_finished_folder(tmp_path):
    target = tmp_path / "cache" / "entry"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("w")
    assert (target / "weights").read_text() == "w"
    assert [p.name for p in target.parent.iterdir()] == ["entry"]


def test_atomic_dir_keeps_a_complete_entry_and_replaces_a_stale_one(tmp_path):
    target = tmp_path / "entry"
    target.mkdir()
    (target / "done").write_text("theirs")
    with atomic_dir(target, keep_existing=lambda t: (t / "done").is_file()) as tmp:
        (tmp / "done").write_text("mine")
    assert (target / "done").read_text() == "theirs"  # another process finished first
    (target / "done").unlink()
    (target / "half").write_text("")
    with atomic_dir(target, keep_existing=lambda t: (t / "done").is_file()) as tmp:
        (tmp / "done").write_text("mine")
    assert sorted(p.name for p in target.iterdir()) == ["done"]
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


def test_atomic_dir_failure_leaves_nothing(tmp_path):
    target = tmp_path / "entry"
    with pytest.raises(OSError), atomic_dir(target) as tmp:
        (tmp / "part").write_text("x")
        raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []
