"""CLI of Coverage-based Search: ``staytuned cbs rank|evaluate`` and ``staytuned recommend``.

Top level imports only stdlib, typer, rich and staytuned's light modules (no pandas/torch), so
``staytuned cbs --help`` starts fast.
"""

from __future__ import annotations

import contextlib
import csv
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from staytuned._util.io import atomic_open, atomic_write_text
from staytuned._util.parse import parse_assignments
from staytuned.cli._common import check_output, cli_errors, err, out, write_json
from staytuned.cli._flags import flag_names, render
from staytuned.cli._options import JsonOpt, OptionGroup, QuietOpt, VerboseOpt, grouped, option_group
from staytuned.errors import InputError

if TYPE_CHECKING:
    from staytuned.cbs import Evaluation, Ranking, RecommendationSet, TolChoice
    from staytuned.results import ColumnSpec, ResultsTable

HP_HELP = (
    "How configs are identified: by --config-col when the table has that column (default 'config_id'); "
    "else by HP columns: --hp-cols if given; else the 'hp_*' columns if any; else every column with no "
    "role (dataset, score, status, seed, model, method, train_size, metric, split, group) and not in "
    "--ignore-cols, except numeric columns with more distinct values than rows per dataset "
    "(measurements such as other metrics). A JSON column of HPs (--hp-json-col, default 'hps') also works."
)

cbs_app = typer.Typer(
    name="cbs",
    help="Coverage-based Search: rank HP configs so the top few together come close to the best on most datasets.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

# -- shared options ---------------------------------------------------------------------------
TableArg = typer.Argument(..., help="Results table: CSV, Parquet (.parquet) or JSON Lines (.jsonl), one row per run.")
DatasetCol = typer.Option("dataset", "--dataset-col", help="Dataset column.")
ConfigCol = typer.Option(None, "--config-col", help="Config-id column (default 'config_id' when present). " + HP_HELP)
ScoreCol = typer.Option("score", "--score-col", help="Score column (the one that chooses).")
HpCols = typer.Option(None, "--hp-cols", help="Comma-separated HP columns (see --config-col for the default).")
HpJsonCol = typer.Option(None, "--hp-json-col", help="Column holding a JSON object of HPs per row (default 'hps' when present).")
IgnoreCols = typer.Option(None, "--ignore-cols", help="Comma-separated columns that are neither HPs nor roles.")
StatusCol = typer.Option(None, "--status-col", help="Status column (default 'status'): ok / failed / pruned.")
SeedCol = typer.Option(None, "--seed-col", help="Seed column (default 'seed'); repeats of a cell are aggregated by --agg.")
MetricCol = typer.Option(None, "--metric-col", help="Metric-name column (default 'metric'); sets the direction per metric.")
ModelCol = typer.Option(None, "--model-col", help="Model column (default 'model').")
MethodCol = typer.Option(None, "--method-col", help="Method column (default 'method').")
TrainSizeCol = typer.Option(None, "--train-size-col", help="Train-size column (default 'train_size').")
SplitCol = typer.Option(None, "--split-col", help="Split column (default 'split' when present); else splits come from dataset-name suffixes -Dev/-Test.")
Model = typer.Option(None, "--model", help="Use only rows of this model (aliases such as mistral-7b accepted).")
Method = typer.Option(None, "--method", help="Use only rows of this method (lora, qlora, full).")
TrainSize = typer.Option(None, "--train-size", help="Use only rows of this train size.")
Direction = typer.Option(None, "--direction", help="max (higher is better) or min; or per metric, e.g. 'loss=min,accuracy=max'. Default: from the metric name (loss/perplexity/error-like = min), else max.")
TolAuto = typer.Option("0.01", "--tol", help="Relative tolerance: a config covers a dataset when within tol*|best| of the best (0.01 = 1%); 'auto': the candidate (0, 0.25%, 0.5%, 1%, 2%, 5%, 10%) whose CBS ranking scores best by leave-one-dataset-out on the table (mean best-of-k, k = 1..3).")
AbsTol = typer.Option(None, "--abs-tol", help="Absolute tolerance (overrides --tol).")
Agg = typer.Option("mean", "--agg", help="How repeated runs (seeds, duplicate rows) of a cell combine: mean | median | max | min.")
ChooseSplit = typer.Option("auto", "--choose-split", help="Split whose scores rank/choose, e.g. Dev. 'auto': the test score column if filled, else X-Dev/X-Test pairs if present, else all datasets; 'all' (rank) / 'none' (evaluate): no pairing.")
ScoreSplit = typer.Option("auto", "--score-split", help="Split whose scores evaluate held-out datasets, e.g. Test (see --choose-split).")


@option_group
def table_columns(
    dataset_col: str = DatasetCol,
    config_col: str | None = ConfigCol,
    score_col: str = ScoreCol,
    test_score_col: str | None = typer.Option(None, "--test-score-col", help="Second score column that scores held-out datasets (default 'score_test' when filled); choosing uses --score-col."),
    hp_cols: str | None = HpCols,
    hp_json_col: str | None = HpJsonCol,
    ignore_cols: str | None = IgnoreCols,
    status_col: str | None = StatusCol,
    seed_col: str | None = SeedCol,
    metric_col: str | None = MetricCol,
    model_col: str | None = ModelCol,
    method_col: str | None = MethodCol,
    train_size_col: str | None = TrainSizeCol,
    split_col: str | None = SplitCol,
    group_col: str | None = typer.Option(None, "--group-col", help="Leave-one-group-out by this column (e.g. task type; one group per dataset)."),
) -> None:
    """The column of each role in a results table (rank and recommend take fewer)."""


@option_group
def row_filter(model: str | None = Model, method: str | None = Method, train_size: str | None = TrainSize) -> None:
    """Which rows of the table to use (cbs rank and evaluate)."""


# The API names library errors and notes about a results table give -> the flags that set them.
_ROLES = ("dataset", "config", "score", "test_score", "status", "seed", "metric", "model", "method",
          "train_size", "split", "group", "hp_json")
TABLE_FLAGS = {
    **{f"ColumnSpec.{role}": f"--{role.replace('_', '-')}-col" for role in _ROLES},
    "ColumnSpec.hps": "--hp-cols", "ColumnSpec.ignore": "--ignore-cols",
    **{f"slice({axis}=...)": f"--{axis.replace('_', '-')}" for axis in ("model", "method", "train_size")},
    "abs_tol": "--abs-tol", "random_perms": "--random-perms", "tol": "--tol",
}
SHOWN = 50  # ranks printed when --k is not given (all of them are in --json)


def _csv_list(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _columns(**kw: Any) -> ColumnSpec:
    from staytuned.results import ColumnSpec

    spec: dict[str, Any] = {}
    mapping = {
        "dataset_col": "dataset", "config_col": "config", "score_col": "score", "test_score_col": "test_score",
        "status_col": "status", "seed_col": "seed", "metric_col": "metric", "model_col": "model",
        "method_col": "method", "train_size_col": "train_size", "split_col": "split", "group_col": "group",
        "hp_json_col": "hp_json",
    }
    for opt, role in mapping.items():
        if kw.get(opt) is not None:
            spec[role] = kw[opt]
    if kw.get("hp_cols"):
        spec["hps"] = _csv_list(kw["hp_cols"])
    if kw.get("ignore_cols"):
        spec["ignore"] = ColumnSpec().ignore + (_csv_list(kw["ignore_cols"]) or ())
    return ColumnSpec(**spec)


def _direction(text: str | None) -> str | dict[str, str] | None:
    if text is None:
        return None
    if "=" not in text:
        if text not in ("max", "min"):
            raise InputError("unknown direction", field="--direction", value=text,
                             expected="max, min, or metric=max|min[,...]")
        return text
    out = parse_assignments(text, field="--direction", expected="metric=max or metric=min")
    for name, d in out.items():
        if d not in ("max", "min"):
            raise InputError("unknown direction", field="--direction", value=f"{name}={d}",
                             expected="metric=max or metric=min")
    return out


def _notes(notes: Iterable[str], quiet: bool) -> None:
    if quiet:
        return
    for n in notes:
        err.print("[dim]note:[/] " + render(n, TABLE_FLAGS), markup=True, highlight=False)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.4g}"
    return str(v)


def _hps_text(hps: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in hps.items())


def _load(table: Path, verbose: bool, **cols: Any) -> ResultsTable:
    """``table`` read with the column options ``cols`` (their values by option name)."""
    from staytuned.results import load_results

    t = load_results(table, _columns(**cols))
    if verbose:
        err.print(f"read {len(t)} runs, {len(t.datasets)} datasets, {len(t.config_ids)} configs from {table}")
    return t


def _check_out_path(path: Path | None, suffixes: tuple[str, ...], flag: str) -> None:
    """Validate output paths before any work, so bad input writes nothing."""
    if path is None or str(path) == "-":
        return
    if suffixes and path.suffix.lower() not in suffixes:
        raise InputError("unsupported output format", field=flag, value=str(path), expected=" or ".join(suffixes))
    check_output(path, flag)


# -- cbs rank ---------------------------------------------------------------------------------
@cbs_app.command("rank", help="Rank the configs of a results table by greedy coverage (CBS) or a portfolio ranker. " + HP_HELP)
@grouped
def rank_cmd(
    table: Path = TableArg,
    cols: OptionGroup = table_columns.param(without=("test_score_col", "group_col")),
    rows: OptionGroup = row_filter.param(),
    ranker: str = typer.Option("cbs", "--ranker", help="Ranking method: cbs (greedy coverage) | zeroshot (greedy portfolio by per-dataset rank) | greedy-portfolio (greedy portfolio by normalized score) | best-average (mean normalized score)."),
    direction: str | None = Direction,
    tol: str = TolAuto,
    abs_tol: float | None = AbsTol,
    k: int | None = typer.Option(None, "--k", help=f"Rank this many configs (default all; the first {SHOWN} are printed, all go to --json)."),
    agg: str = Agg,
    choose_split: str = typer.Option("auto", "--choose-split", help="Rank on the datasets of this split only (e.g. Dev). 'auto': Dev when X-Dev/X-Test pairs exist, else all; 'all': every dataset."),
    json_path: str | None = JsonOpt,
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
) -> None:
    with cli_errors(), flag_names({**TABLE_FLAGS, "method": "--ranker"}):
        from staytuned.cbs import check_ranker, choose_tolerance, rank_by

        check_ranker(ranker)
        tol_value = _parse_tol(tol, abs_tol)
        if k is not None and k < 1:
            raise InputError("k must be positive", field="k", value=k, expected="an integer >= 1")
        t = _slice(_load(table, verbose, **cols.values()), **rows.values())
        matrix, what = t.choose_matrix(choose_split, direction=_direction(direction), agg=agg)
        choice = None
        if tol_value == "auto":
            choice = choose_tolerance(matrix)
            tol_value = choice.tol
        assert isinstance(tol_value, float)
        # Every ranker is greedy, so its first ranks do not depend on how many follow: without
        # --json only the printed ones are computed.
        n_ranks = matrix.shape[0] if k is None else min(k, matrix.shape[0])
        ranking = rank_by(matrix, ranker, tol=tol_value, abs_tol=abs_tol,
                          k=k if k is not None or json_path is not None else SHOWN)
        if not quiet:
            err.print(f"ranked {n_ranks} of {matrix.shape[0]} configs on {matrix.shape[1]} datasets ({what}); "
                      f"direction {matrix.direction}; ranker {ranker}")
            if choice is not None:
                err.print(_tol_line(choice))
        _notes(ranking.notes, quiet)
        if json_path != "-":
            _print_ranking(ranking, len(matrix.datasets), shown=None if k is not None else SHOWN, total=n_ranks)
        payload = ranking.to_dict()
        payload.update(source=str(table), datasets_used=what, direction=matrix.direction)
        if choice is not None:
            payload["tol_choice"] = choice.to_dict()
        write_json(json_path, payload)


def _parse_tol(text: str, abs_tol: float | None) -> float | str:
    """``--tol``: a number or 'auto' (which cannot go with --abs-tol)."""
    from staytuned.cbs import parse_tol

    value = parse_tol(text)
    if value == "auto" and abs_tol is not None:
        raise InputError("--tol auto chooses a relative tolerance; it cannot go with --abs-tol", field="tol",
                         value="auto", expected="a number with --abs-tol, or auto without it")
    return value


def _tol_line(choice: TolChoice) -> str:
    scores = ", ".join(f"{c:g}: {s:.3f}" for c, s in zip(choice.candidates, choice.scores, strict=True))
    return (f"tol auto: chose {choice.tol:g} ({choice.tol * 100:g}%) by {choice.scheme}, mean best-of-k over "
            f"k=1..{choice.k} per candidate: {scores}")


def _slice(t: ResultsTable, model: str | None, method: str | None, train_size: str | None) -> ResultsTable:
    if model is None and method is None and train_size is None:
        return t
    if model is not None and t.model is not None:
        from staytuned.cbs import match_model

        model = match_model(t, model)
    return t.slice(model=model, method=method, train_size=train_size)


_RANKER_TITLES = {"cbs": "CBS ranking", "zeroshot": "Zero-shot portfolio (by rank)",
                  "greedy-portfolio": "Greedy portfolio (by normalized score)", "best-average": "Best-average ranking"}


def _print_ranking(ranking: Ranking, m: int, shown: int | None = None, total: int | None = None) -> None:
    """The ranking as a table: every rank, or the first ``shown`` of ``total`` (rendering
    thousands of folded rows takes seconds and no one reads them on a terminal; --json holds
    them all)."""
    total = len(ranking.steps) if total is None else total
    what = "tol" if ranking.method == "cbs" else "coverage at tol"
    tol = f"{what} {ranking.tol:g}" if ranking.abs_tol is None else f"{what.replace('tol', 'abs tol')} {ranking.abs_tol:g}"
    steps = ranking.steps if shown is None else ranking.steps[:shown]
    caption = None
    if len(steps) < total:
        caption = f"the first {len(steps)} of {total} ranks; --k N prints N, --json PATH writes all"
    tab = Table(title=f"{_RANKER_TITLES.get(ranking.method, ranking.method)} ({tol})", caption=caption)
    for col, just in (("rank", "right"), ("config", "left"), ("HPs", "left"), ("round", "right"),
                      ("newly covers", "left"), ("coverage", "right"), ("best-of-k", "right")):
        # HPs are the widest cell: let them take the room and fold, keep the numbers on one line.
        tab.add_column(col, justify=just, ratio=4 if col == "HPs" else None, overflow="fold",  # type: ignore[arg-type]
                       no_wrap=col not in ("HPs", "newly covers"))
    for s in steps:
        new = ", ".join(s.new_datasets[:4]) + (f" +{len(s.new_datasets) - 4}" if len(s.new_datasets) > 4 else "")
        tab.add_row(str(s.rank), s.config_id, _hps_text(s.hps), str(s.round), f"{len(s.new_datasets)}: {new}" if new else "0",
                    f"{s.covered}/{m}", f"{s.mean_best_of_k:.4f}")
    out.print(tab)


# -- cbs evaluate -----------------------------------------------------------------------------
@cbs_app.command("evaluate", help="Leave-one-dataset-out (or leave-one-group-out) evaluation of CBS against baselines (zero-shot and greedy portfolios, best-average, random, default, oracle). " + HP_HELP)
@grouped
def evaluate_cmd(
    table: Path = TableArg,
    cols: OptionGroup = table_columns.param(),
    rows: OptionGroup = row_filter.param(),
    direction: str | None = Direction,
    tol: str = typer.Option("0.01", "--tol", help="Relative tolerance of CBS's coverage and of 'solved' (0.01 = 1%); 'auto': CBS's tolerance is chosen in each fold by an inner leave-one-out on that fold's training datasets (nested; candidates 0 to 10%, objective mean best-of-k for k = 1..3), and 'solved' stays 1%."),
    abs_tol: float | None = AbsTol,
    k: int = typer.Option(10, "--k", help="Evaluate best-of-top-k for k = 1..K."),
    agg: str = Agg,
    choose_split: str = ChooseSplit,
    score_split: str = ScoreSplit,
    default_config: str | None = typer.Option(None, "--default-config", help="Fixed default baseline: a config id or HP assignment such as 'lr=1e-4,epochs=3'."),
    random_perms: int = typer.Option(0, "--random-perms", help="Random baseline: 0 = exact expectation over all orders; N = mean over N seeded permutations."),
    seed: int = typer.Option(0, "--seed", help="Seed of --random-perms."),
    json_path: str | None = JsonOpt,
    csv_path: Path | None = typer.Option(None, "--csv", help="Write method,k,mean_best_of_k,solved_fraction rows to PATH."),
    plot_path: Path | None = typer.Option(None, "--plot", help="Plot best-of-top-k and solved fraction against k to PATH (.png or .svg)."),
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
) -> None:
    with cli_errors(), flag_names(TABLE_FLAGS):
        from staytuned.cbs import evaluate

        tol_value = _parse_tol(tol, abs_tol)
        _check_out_path(csv_path, (), "--csv")
        _check_out_path(plot_path, (".png", ".svg"), "--plot")
        columns = cols.values()
        group_col, split_col = columns["group_col"], columns["split_col"]
        if group_col is not None and split_col is not None and group_col == split_col:
            raise InputError("the group column cannot also be the split column", field="--group-col", value=group_col)
        t = _slice(_load(table, verbose, **columns), **rows.values())
        choose, scoring, what = t.eval_matrices(choose_split, score_split, direction=_direction(direction), agg=agg)
        groups: dict[str, str] | None = None
        if group_col is not None:
            of = dict(zip(choose.datasets, choose.groups or (), strict=False))
            if any(g is None for g in of.values()):
                raise InputError("datasets without a group value", file=str(table), column=group_col,
                                 value=[d for d, g in of.items() if g is None][:5], expected="a group in every row")
            groups = {d: g for d, g in of.items() if g is not None}
        with _progress(quiet, "leave-one-out folds") as on_fold:
            evaluation = evaluate(choose, scoring, groups=groups, tol=tol_value, abs_tol=abs_tol, k=k,
                                  default_config=default_config, random_perms=random_perms, seed=seed,
                                  on_fold=on_fold)
        if not quiet:
            err.print(f"{evaluation.scheme} over {len(evaluation.held_out)} datasets x {choose.shape[0]} configs; {what}; "
                      f"random baseline: {evaluation.random}")
            if evaluation.tol_per_fold is not None:
                chosen = ", ".join(f"{g}: {t:g}" for g, t in evaluation.tol_per_fold.items())
                err.print(f"tol auto: CBS's tolerance per fold (inner leave-one-out) {chosen}; solved = within "
                          f"{evaluation.tol:g}")
        _notes(evaluation.notes, quiet)
        if json_path != "-":
            _print_evaluation(evaluation)
        payload = evaluation.to_dict()
        payload.update(source=str(table), pairing=what)
        write_json(json_path, payload)
        if csv_path is not None:
            _write_csv(csv_path, evaluation.rows())
        if plot_path is not None:
            from staytuned.cbs import plot_evaluation

            plot_evaluation(evaluation, plot_path, title=f"{table.name}: {evaluation.scheme}")
            if not quiet:
                err.print(f"plot written to {plot_path}")


@contextlib.contextmanager
def _progress(quiet: bool, label: str) -> Iterator[Callable[[int, int], None]]:
    """Progress on stderr (bar on a terminal, lines elsewhere, none when quiet): on_step(done, total)."""
    from staytuned.cli._progress import step_progress

    with step_progress(err, quiet=quiet) as bar:
        yield lambda done, total: bar.update(label, done, total)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_open(path, newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})


def _print_evaluation(ev: Evaluation) -> None:
    tab = Table(title=f"{ev.scheme}: mean best-of-top-k normalized score / fraction solved",
                caption="zeroshot, greedy-portfolio: greedy portfolios by rank / by normalized score "
                        "(baselines, built on the same training datasets)"
                if {"zeroshot", "greedy-portfolio"} & set(ev.methods) else None)
    tab.add_column("k", justify="right")
    for name in ev.methods:
        tab.add_column(name, justify="right")
    for i, k in enumerate(ev.k):
        tab.add_row(str(k), *(f"{c.mean_best_of_k[i]:.3f} / {c.solved_fraction[i]:.2f}" for c in ev.methods.values()))
    out.print(tab)


# -- recommend --------------------------------------------------------------------------------
@grouped
def recommend_cmd(
    table: Path | None = typer.Argument(None, help="Optional results table; without it, the shipped recommendations."),
    model: str | None = typer.Option(None, "--model", help="Model name or alias (mistral-7b, mistralai/Mistral-7B-v0.1, llama-3-8b, ...)."),
    method: str | None = typer.Option(None, "--method", help="lora, qlora or full (qlora without a study of its own: the LoRA recommendations, said so)."),
    train_size: int | None = typer.Option(None, "--train-size", help="Training-set size of the slice."),
    k: int | None = typer.Option(None, "--k", help="Top-k configs (default: 3 from a table; every shipped rank otherwise)."),
    cols: OptionGroup = table_columns.param(without=("test_score_col", "status_col", "seed_col", "metric_col",
                                                     "split_col", "group_col")),
    direction: str | None = Direction,
    tol: str = TolAuto,
    abs_tol: float | None = AbsTol,
    agg: str = Agg,
    json_path: str | None = JsonOpt,
    yaml_path: Path | None = typer.Option(None, "--yaml", help="Also write the recommendations as YAML to PATH."),
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Recommended HP configs for a model / method / train size: shipped (with provenance) or CBS on a results table."""
    with cli_errors(), flag_names(TABLE_FLAGS):
        from staytuned.cbs import recommend

        _check_out_path(yaml_path, (".yaml", ".yml"), "--yaml")
        if table is None:
            recs = recommend(model=model, method=method, train_size=train_size, k=k)
        else:
            t = _load(table, verbose, **cols.values())
            recs = recommend(t, model=model, method=method, train_size=train_size, k=k,
                             tol=_parse_tol(tol, abs_tol), abs_tol=abs_tol,
                             direction=_direction(direction), agg=agg)
        _notes(recs.notes, quiet)
        if json_path != "-":
            _print_recommendations(recs)
        payload = recs.to_dict()
        write_json(json_path, payload)
        if yaml_path is not None:
            import yaml

            from staytuned.cli._common import _jsonable

            atomic_write_text(yaml_path, yaml.safe_dump(_jsonable(payload), sort_keys=False))


def _cite(source: dict[str, Any]) -> str:
    """Where a shipped recommendation comes from, in one short line."""
    if source.get("arxiv"):
        return f"{source.get('authors', '')} {source.get('year', '')}, arXiv {source['arxiv']}".strip()
    text = str(source.get("id") or source.get("title") or source.get("file") or "shipped")
    if source.get("datasets"):
        text += f" ({len(source['datasets'])} datasets, {source.get('n_configs', '?')} configs)"
    return text


def _print_recommendations(recs: RecommendationSet) -> None:
    """A table that fits an 80-column terminal without cutting a value.

    What every row shares (model, method, train size, source, HPs with one value) goes in the
    title and caption, so the config column shows what tells the ranks apart, folded, not cut.
    """
    rows = list(recs.recommendations)
    from_table = recs.origin != "shipped"
    fields = {
        "model": [r.model for r in rows],
        "method": ["-" if r.method is None else str(r.method) for r in rows],
        "train size": ["-" if r.train_size is None else str(r.train_size) for r in rows],
    }
    if not from_table:
        fields["source"] = [_cite(r.source) for r in rows]
    shared = {k: v[0] for k, v in fields.items() if len(set(v)) == 1}
    keys = list(dict.fromkeys(k for r in rows for k in r.config))
    fixed = {k: rows[0].config.get(k) for k in keys
             if len(rows) > 1 and all(k in r.config and r.config[k] == rows[0].config[k] for r in rows)}

    title = "Recommended configurations" + (" (shipped)" if not from_table else f" (CBS on {recs.origin})")
    head = ", ".join(f"{k} {v}" for k, v in shared.items() if k != "source" and v != "-")
    caption = [f"source: {shared['source']}"] if "source" in shared else []
    if fixed:
        caption.append("every rank: " + _hps_text(fixed))
    if recs.stand_in_for is not None:  # shown whatever --quiet says: the rows are another method's
        head += (", " if head else "") + f"shown for {recs.stand_in_for}"
        caption.append(f"measured with {rows[0].method if rows else '-'}, shown for {recs.stand_in_for}, which "
                       "has no recommendations of its own")
    tab = Table(title=title + (f"\n{head}" if head else ""), caption="\n".join(caption) or None,
                caption_justify="left")
    for col in (c for c in fields if c not in shared):
        tab.add_column(col, overflow="fold")
    tab.add_column("rank", justify="right")
    tab.add_column("config", overflow="fold", ratio=3)
    if from_table:
        tab.add_column("coverage", overflow="fold")
    for i, r in enumerate(rows):
        cells = [v[i] for c, v in fields.items() if c not in shared]
        cells += [str(r.rank), _hps_text({k: v for k, v in r.config.items() if k not in fixed})]
        if from_table:
            cells.append(f"{r.coverage:.0%} (best-of-k {r.mean_best_of_k:.3f})")
        tab.add_row(*cells)
    out.print(tab)


def register(app: typer.Typer) -> None:
    """Add the ``cbs`` group and the top-level ``recommend`` command."""
    app.add_typer(cbs_app, name="cbs")
    app.command("recommend")(recommend_cmd)
