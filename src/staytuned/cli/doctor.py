"""``staytuned doctor``: print this machine's hardware, libraries and precision choices."""

from __future__ import annotations

from typing import Any

import typer
from rich import box
from rich.table import Table

from staytuned.cli._common import cli_errors, out, write_json
from staytuned.cli._options import JsonOpt


def _render(report: Any) -> None:
    d = report.to_dict()
    table = Table(box=box.SIMPLE_HEAD, show_header=False, pad_edge=False, title="staytuned doctor",
                  title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value")
    table.add_row("staytuned / python", f"{d['staytuned']} / {d['python']}")
    table.add_row("platform", d["platform"])
    cpu = d["cpu"]
    table.add_row("CPU", f"{cpu['model']} ({cpu['machine']}), {cpu['logical_cpus']} logical CPUs")
    table.add_row("vector flags", " ".join(cpu["flags"]) or "none of avx2/avx512/amx")
    m = d["matmul"]
    if m is not None:
        verdict = "[green]fast[/]" if d["bf16_fast"] else "[red]slow[/]"
        table.add_row("bf16 matmul", f"{verdict}: bf16 {m['bf16_gflops']:.3g} vs fp32 {m['fp32_gflops']:.3g} "
                                     f"GFLOP/s ({m['bf16_ratio']:.2f}x; {m['threads']} thread, {m['size']}^3, "
                                     f"{'cached' if m['cached'] else 'measured now'})")
    t = d["threads"]
    table.add_row("threads", f"{t['threads']} ({t['reason']})")
    if not d["gpus"]:
        table.add_row("GPUs", "none")
    for g in d["gpus"]:
        cap = ".".join(str(x) for x in g["capability"])
        kinds = "bf16" if g["bf16"] else ("fp16" if g["fp16"] else "fp32 only")
        table.add_row(f"GPU {g['index']}", f"{g['name']}, {g['total_memory_mb'] / 1024:.1f} GiB, "
                                           f"compute capability {cap}, {kinds}")
    for name, version in d["packages"].items():
        table.add_row(name, version if version != "not installed" else "[dim]not installed[/]")
    for dev, choice in d["precision_auto"].items():
        table.add_row(f"precision=auto on {dev}", choice["reason"])  # the reason starts with the dtype
    for note in d["notes"]:
        table.add_row("note", note)
    out.print(table)


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor(
        refresh: bool = typer.Option(False, "--refresh", help="Measure the bf16/fp32 matmul speed again instead of reading the cache."),
        json_path: str | None = JsonOpt,
    ) -> None:
        """Show this machine's CPU, GPUs, threads, library versions and what precision=auto picks.

        Paste its output into bug reports. Example: [bold]staytuned doctor --json -[/]
        """
        from staytuned.hardware.doctor import diagnose

        with cli_errors():
            report = diagnose(refresh=refresh)
        if json_path != "-":
            _render(report)
        write_json(json_path, report.to_dict())
