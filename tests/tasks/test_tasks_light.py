"""staytuned.tasks (tasks, templates, metrics) imports and works without torch, transformers or pandas
(ROUGE aside)."""

from __future__ import annotations

import subprocess
import sys

CODE = r"""
import sys
from staytuned.tasks import build_chat_example, compute_metrics, load_task
task = load_task("squad")
rows = task.eval_rows("validation", 5)
prompt, target = build_chat_example(task, rows[0], None)
m = compute_metrics(task, [r["answers"][0] for r in rows], task.references(rows))
assert m["exact_match"] == 1.0, m
s = load_task("scitldr", template="TLDR: {document}")
heavy = sorted(m for m in ("torch", "transformers", "pandas", "datasets", "peft", "ray", "plotly") if m in sys.modules)
print("heavy:", heavy)
# tasks sit below fine-tuning and decoding: loading one pulls in neither.
assert not [m for m in sys.modules if m.startswith(("staytuned.finetune", "staytuned.decoding"))]
# ROUGE imports rouge-score lazily (which itself pulls in nltk/scipy/pandas): only now.
m = compute_metrics(s, ["a b"], ["a b"])
assert m["rougeL"] == 1.0, m
assert "torch" not in sys.modules
"""


def test_light_modules_need_no_heavy_imports() -> None:
    res = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "heavy: []"


def test_task_modules_import_each_other_without_a_cycle() -> None:
    # Every import between staytuned.tasks modules, TYPE_CHECKING ones included, points one way:
    # a Task must never need its templates, metrics or loaders.
    import ast
    from pathlib import Path

    import staytuned.tasks

    folder = Path(staytuned.tasks.__file__).parent
    deps: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        if path.stem == "__init__":
            continue
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("staytuned.tasks."):
                found.add(node.module.rsplit(".", 1)[1])
        deps[path.stem] = found
    assert deps["task"] <= {"sampling"}
    assert deps["sampling"] == set() and deps["readers"] == set()
    done: set[str] = set()

    def visit(mod: str, stack: tuple[str, ...]) -> None:
        assert mod not in stack, f"import cycle: {' -> '.join((*stack, mod))}"
        if mod not in done:
            for dep in deps[mod]:
                visit(dep, (*stack, mod))
            done.add(mod)

    for mod in deps:
        visit(mod, ())
    assert {"task", "sampling", "readers", "columns", "sources", "templates", "metrics"} <= done
