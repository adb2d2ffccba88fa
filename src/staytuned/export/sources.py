"""Where an exported config comes from: a config file, an Optuna study, or a recommendation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from staytuned._util.mapping import read_mapping
from staytuned.errors import InputError, StorageError
from staytuned.export.mapping import DEFAULTS
from staytuned.hparams.schema import EXECUTION_SETTINGS

HP_NAMES = frozenset(DEFAULTS) | {"learning_rate"}
# Execution settings (precision ...) may ride along in a config file; plan_export splits them off.
_ACCEPTED = HP_NAMES | EXECUTION_SETTINGS


def clean_config(raw: dict[str, Any], *, where: str) -> dict[str, Any]:
    """Keep TrainConfig HPs; accept results-table names (``hp_<name>``); reject unknown names."""
    config: dict[str, Any] = {}
    for key, value in raw.items():
        name = key[3:] if key.startswith("hp_") else key
        if name not in _ACCEPTED:
            raise InputError("not a training hyperparameter", file=where, field=key,
                             expected="one of " + ", ".join(sorted(HP_NAMES)))
        if value is not None and not (isinstance(value, float) and value != value):  # skip NaN cells
            config[name] = value
    return config


def config_from_file(path: str | Path) -> tuple[dict[str, Any], str]:
    """Read a JSON or YAML mapping of HPs (a bare mapping, or one under a ``config`` key)."""
    p = Path(path)
    data = read_mapping(p, what="config file", unwrap="config",
                        expected="a mapping of hyperparameter names to values")
    return clean_config(data, where=str(p)), f"config file {p.name}"


def config_from_study(storage: str, study_name: str | None = None) -> tuple[dict[str, Any], str]:
    """The best finished trial of a single-objective study: its config plus method/seed."""
    from staytuned.search.records import study_records

    study = load_study(storage, study_name)
    if len(study.directions) > 1:
        raise InputError("a multi-objective study has no single best configuration",
                         field="study_name", value=study.study_name, expected="a single-objective training study")
    ok = [r for r in study_records(study) if r.status == "ok" and r.score is not None]
    if not ok:
        raise InputError("no completed trial to export", field="study_name", value=study.study_name)
    sign = 1 if study.direction.name == "MAXIMIZE" else -1
    best = max(ok, key=lambda r: (sign * (r.score or 0.0), -r.number))  # every score in ok is set
    if study.user_attrs.get("kind") == "decode":
        raise InputError("a decoding study holds generation settings, not a training configuration",
                         field="study_name", value=study.study_name, expected="a tune or grid study")
    # The record's config is hyperparameters only (an old trial's precision is an execution
    # setting); method and seed are cell attrs when they were fixed rather than searched.
    raw: dict[str, Any] = {"method": best.method, "seed": best.seed}
    raw = {k: v for k, v in raw.items() if v is not None}
    raw.update({k: v for k, v in best.config.items() if k in HP_NAMES or k.startswith("hp_")})
    source = f"study {study.study_name!r} trial {best.number} (score {best.score:.4g})"
    return clean_config(raw, where=f"study {study.study_name}"), source


def open_existing_storage(storage: str) -> tuple[Any, str]:
    """(Optuna storage, URL) of a storage that must already exist: reading never creates one.

    Opening goes through :func:`staytuned.search.storage.open_storage` (drivers, timeouts and a
    one-line :class:`StorageError` for an unreachable server).
    """
    from staytuned.search.storage import open_storage, sqlite_path

    url = storage_url(storage)
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise InputError("no such SQLite storage", file=str(path), expected="the .db file of a study")
    return open_storage(url), url


def load_study(storage: str, study_name: str | None = None):  # -> optuna.Study
    """Open a study by name, or the only study in the storage."""
    import optuna

    opened, _ = open_existing_storage(storage)
    try:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage=opened, include_best_trial=False)]
    except Exception as exc:  # sqlalchemy errors: not an Optuna database
        raise StorageError(f"cannot read studies from {storage}: {exc}".splitlines()[0]) from None
    if study_name is None:
        if len(names) != 1:
            raise InputError("storage holds several studies; name one" if names
                             else "storage holds no study", field="study_name", value=None,
                             expected=", ".join(names) or "a storage with a study")
        study_name = names[0]
    if study_name not in names:
        raise InputError("no such study", field="study_name", value=study_name,
                         expected=", ".join(names) or "a storage with a study")
    return optuna.load_study(study_name=study_name, storage=opened)


def storage_url(storage: str) -> str:
    """Accept a SQLAlchemy URL or a path to an SQLite file."""
    if "://" in storage:
        return storage
    p = Path(storage)
    if not p.is_file():
        raise InputError("no such storage file (or give a URL such as sqlite:///study.db)", file=storage)
    return f"sqlite:///{p.resolve()}"


def config_from_recommendation(ref: str, rank: int = 1) -> tuple[dict[str, Any], str]:
    """A shipped recommendation, ``MODEL/METHOD`` (model names and aliases as `staytuned recommend`)."""
    from staytuned.cbs import recommend

    model, _, method = ref.rpartition("/")
    if not model or not method:
        raise InputError("expected MODEL/METHOD", field="ref", value=ref,
                         expected="e.g. mistral-7b/lora (see `staytuned recommend`)")
    found = recommend(model=model, method=method)
    recs = [r for r in found.recommendations if r.rank == rank]
    if not recs:
        raise InputError("no recommendation of this rank", field="rank", value=rank,
                         expected=f"a rank listed by `staytuned recommend --model {model} --method {method}`")
    # Several train sizes may be shipped: prefer the general entry, else the largest size.
    rec = sorted(recs, key=lambda r: (r.train_size is not None, -(r.train_size or 0)))[0]
    cite = f"arXiv {rec.source['arxiv']}" if rec.source.get("arxiv") else rec.source.get("id") or "shipped"
    size = f", train size {rec.train_size}" if rec.train_size is not None else ""
    raw = {"method": rec.method or method, **rec.config}
    what = f"recommendation {rec.model}/{rec.method} rank {rec.rank}{size} ({cite})"
    if found.stand_in_for is not None:  # e.g. qlora: the LoRA recommendation, trained as asked
        raw["method"] = found.stand_in_for
        what += f", used for {found.stand_in_for}, which has no recommendation of its own"
    return clean_config(raw, where=f"recommendation {ref}"), what
