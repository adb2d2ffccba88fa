"""``staytuned tasks``: list the bundled tasks (or the tasks in a folder) with type, metric, sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.table import Table

from staytuned.cli._common import cli_errors, err, out, write_json
from staytuned.cli._options import JsonOpt, QuietOpt
from staytuned.errors import InputError
from staytuned.tasks import bundled_manifest, load_task


def _rows(folder: Path | None) -> list[dict[str, Any]]:
    if folder is None:
        manifest = bundled_manifest()
        rows = []
        for name in sorted(manifest):
            info = load_task(name).summary()
            info["license"] = manifest[name].get("license", "")
            rows.append(info)
        return rows
    if not folder.is_dir():
        raise InputError("not a folder", file=str(folder), expected="a folder of dataset folders")
    rows = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        try:
            info = load_task(sub).summary()
        except InputError as exc:
            err.print(f"[yellow]skipped[/] {sub.name}: {exc}", markup=True, highlight=False)
            continue
        info["license"] = ""
        rows.append(info)
    return rows


def _fmt(n: int) -> str:
    return f"{n:,}" if n else "—"


def register(app: typer.Typer) -> None:
    @app.command("tasks")
    def tasks(
        folder: Path | None = typer.Option(
            None, "--dir", help="List the dataset folders inside DIR instead of the bundled tasks."
        ),
        json_path: str | None = JsonOpt,
        quiet: bool = QuietOpt,
    ) -> None:
        """List tasks: name, type, primary metric, number of labels and split sizes.

        Bundled tasks are usable by short name, e.g. [bold]staytuned train --task sst2[/];
        sources and licenses are in staytuned/data/ATTRIBUTION.md.
        """
        with cli_errors():
            rows = _rows(folder)
        if not quiet and json_path != "-":
            table = Table(
                title="bundled tasks" if folder is None else f"tasks in {folder}",
                box=box.SIMPLE_HEAD,
                pad_edge=False,
                padding=(0, 1, 0, 0),
                caption="sources and licenses: staytuned/data/ATTRIBUTION.md" if folder is None else None,
            )
            cols = ["name", "type", "metric", "labels", "train", "val", "test"]
            if folder is None:
                cols.append("license")
            for col in cols:
                right = col in ("labels", "train", "val", "test")
                # Numbers never wrap (a folded "1,0\n00" misleads); text columns may.
                table.add_column(col, justify="right" if right else "left", no_wrap=right, min_width=5 if right else None)
            for r in rows:
                s = r["splits"]
                table.add_row(
                    r["name"], r["type"], r["metric"],
                    str(r["n_labels"]) if r["n_labels"] else "—",
                    _fmt(s["train"]), _fmt(s["validation"]), _fmt(s["test"]),
                    *([r["license"]] if folder is None else []),
                )
            out.print(table)
        write_json(json_path, {"tasks": rows})
