"""Tests mirror the source layout: ``tests/<area>/...`` tests ``src/staytuned/<area>/...``."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
SRC = REPO / "src" / "staytuned"
#: Test folders with no package of their own: the studies shipped beside the code (``studies/``).
EXTRA = {"studies"}


def _is_test_folder(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith((".", "__"))


def test_every_test_folder_mirrors_a_source_package_or_module() -> None:
    misplaced = []
    for folder in sorted(p for p in TESTS.rglob("*") if _is_test_folder(p)):
        rel = folder.relative_to(TESTS)
        if any(part.startswith((".", "__")) for part in rel.parts):
            continue
        if rel.parts[0] in EXTRA:
            continue
        target = SRC.joinpath(*rel.parts)
        if not ((target / "__init__.py").is_file() or target.with_suffix(".py").is_file()):
            misplaced.append(f"tests/{rel.as_posix()}")
    assert not misplaced, (
        f"test folders with no matching src/staytuned package or module: {misplaced}; "
        "move the tests next to what they test (tests/<area>/ for src/staytuned/<area>/)"
    )


def test_extra_test_folders_exist_where_allowed() -> None:
    # tests/studies tests the studies/ folder at the top of the repository.
    for name in EXTRA:
        if (TESTS / name).is_dir():
            assert (REPO / name).is_dir(), f"tests/{name} has no {name}/ folder to test"
