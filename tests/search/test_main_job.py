"""The README's main job, run exactly as its first command line says (after bootstrap)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def main_job_args() -> list[str]:
    """The staytuned arguments of the README's first command (``bootstrap ... && staytuned ...``)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)\n", text)
    assert block is not None, "the README opens with a bash block"
    first = block.group(1)
    assert first.startswith("bash scripts/bootstrap.sh && .venv/bin/staytuned "), first
    return shlex.split(first.split("&&", 1)[1])[1:]


def test_readme_main_job_command_is_the_benchmarked_one() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from bench_main_job import ARGS
    finally:
        sys.path.pop(0)
    assert main_job_args() == ARGS


@pytest.mark.slow
def test_main_job_prints_the_untuned_and_the_best_score(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "staytuned"
    env = {**os.environ, "STAYTUNED_CACHE": os.environ.get("STAYTUNED_CACHE", str(tmp_path / "c"))}
    proc = subprocess.run([str(exe), *main_job_args()], cwd=tmp_path, capture_output=True, text=True,
                          env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"untuned smollm2-135m: accuracy 0\.\d{3} on 100 validation rows", proc.stderr)
    gain = re.search(r"untuned (0\.\d{3}) -> best (0\.\d{3}) \(([+-]\d+\.\d) points\) in 3 trials",
                     proc.stdout)
    assert gain is not None, proc.stdout
    untuned, best = float(gain.group(1)), float(gain.group(2))
    assert best > untuned  # the demo is chosen so tuning pays off (bench/bench_main_job.py: 3 seeds)
    for name in ("table: ", "report: "):
        line = next(x for x in proc.stdout.splitlines() if x.startswith(name))
        assert (tmp_path / line[len(name):]).is_file()
