"""Why trials did not succeed, for the end of ``tune``, ``grid`` and ``decode tune``.

From the trial records (:mod:`staytuned.search.records`, the one reader): failed and pruned
trials grouped by their reason ("3 trials failed: invalid learning_rate (got -0.001); expected a
finite number > 0 (trials 0, 1, 2)"), and interrupted trials with the trial that re-runs their
config ("trial 1 was interrupted; its config runs again as trial 2").

Library code: returns lines, prints nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from staytuned.search.records import TrialRecord

MAX_LISTED = 12  # trial numbers named per group before "... (N in all)"
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", re.IGNORECASE)


@dataclass(frozen=True)
class ReasonGroup:
    """Trials of one status that stopped for one reason (numbers inside it may differ)."""

    status: str  # failed | pruned
    reason: str  # the first trial's reason, first line
    trials: tuple[tuple[str, int], ...]  # (study, trial number)
    alike: bool  # every reason is this text exactly (else they differ only in numbers)

    def to_dict(self) -> dict[str, object]:
        return {"status": self.status, "reason": self.reason,
                "trials": [{"study": s, "number": n} for s, n in self.trials],
                "same_text": self.alike}


@dataclass(frozen=True)
class Interruption:
    """A trial whose worker stopped mid-trial, and the trial re-running its config (if any)."""

    study: str
    number: int
    retry: int | None

    def to_dict(self) -> dict[str, object]:
        return {"study": self.study, "number": self.number, "retry": self.retry}


def reason_of(record: TrialRecord) -> str:
    """One line saying why a failed or pruned trial stopped."""
    if record.error:
        lines = [ln.strip() for ln in str(record.error).strip().splitlines() if ln.strip()]
        if lines:
            return lines[0]
    if record.status == "pruned":
        epochs = len(record.epoch_scores)
        return ("stopped early by the pruner" if not epochs
                else "stopped early by the pruner: a low validation score per epoch")
    return "no reason stored"


def reason_groups(records: Iterable[TrialRecord]) -> list[ReasonGroup]:
    """Failed and pruned trials grouped by status and reason; largest groups first."""
    groups: dict[tuple[str, str], list[tuple[TrialRecord, str]]] = {}
    for r in records:
        if r.status not in ("failed", "pruned"):
            continue
        reason = reason_of(r)
        groups.setdefault((r.status, _NUMBER.sub("#", reason)), []).append((r, reason))
    out = []
    for (status, _), members in groups.items():
        first = members[0][1]
        out.append(ReasonGroup(status=status, reason=first,
                               trials=tuple((r.study, r.number) for r, _ in members),
                               alike=all(reason == first for _, reason in members)))
    order = {"failed": 0, "pruned": 1}
    return sorted(out, key=lambda g: (order[g.status], -len(g.trials), g.trials[0]))


def interruptions(records: Sequence[TrialRecord]) -> list[Interruption]:
    """Interrupted trials and their retries: the trial Optuna's heartbeat retry marks as the
    re-run of it (``retry_of``), else the first later trial of the same study and config."""
    out = []
    for r in records:
        if r.status != "interrupted":
            continue
        later = [o for o in records if o.study == r.study and o.number > r.number]
        retry = next((o for o in later if o.retry_of == r.number), None)
        if retry is None:
            retry = next((o for o in later if o.config_id == r.config_id
                          and o.retry_of is None and o.status != "interrupted"), None)
        out.append(Interruption(r.study, r.number, None if retry is None else retry.number))
    return out


def _trials_text(trials: Sequence[tuple[str, int]], one_study: bool) -> str:
    by_study: dict[str, list[int]] = {}
    for study, number in trials:
        by_study.setdefault(study, []).append(number)
    parts = []
    for study, numbers in by_study.items():
        shown = ", ".join(map(str, numbers[:MAX_LISTED]))
        if len(numbers) > MAX_LISTED:
            shown += f", ... ({len(numbers)} in all)"
        word = "trial" if len(numbers) == 1 else "trials"
        parts.append(f"{word} {shown}" + ("" if one_study else f" of {study}"))
    return "; ".join(parts)


def summary_lines(records: Sequence[TrialRecord]) -> list[str]:
    """The lines a command prints after its counts: one per reason group, then one per
    interrupted trial. Empty when every trial succeeded."""
    one_study = len({r.study for r in records}) <= 1
    lines = []
    for g in reason_groups(records):
        n = len(g.trials)
        head = f"{n} trial{'s' if n != 1 else ''} {g.status}"
        reason = g.reason if g.alike else f"{g.reason} (and alike)"
        lines.append(f"{head}: {reason} ({_trials_text(g.trials, one_study)})")
    for i in interruptions(records):
        where = "" if one_study else f" of {i.study}"
        after = (f"its config runs again as trial {i.retry}" if i.retry is not None
                 else "its config has not run again yet")
        lines.append(f"trial {i.number}{where} was interrupted; {after}")
    return lines


@dataclass(frozen=True)
class FailureReport:
    """What went wrong in some studies of one storage: lines to print and a JSON-able form."""

    lines: list[str]
    groups: list[ReasonGroup]
    interrupted: list[Interruption]

    def to_dict(self) -> dict[str, object]:
        return {"failures": [g.to_dict() for g in self.groups],
                "interrupted": [i.to_dict() for i in self.interrupted]}


def failure_report(storage: object, study_names: Sequence[str]) -> FailureReport:
    """Read the records of ``study_names`` in ``storage`` (a URL or an open Optuna storage)."""
    from staytuned.search.records import read_records

    if isinstance(storage, str):
        from staytuned.search.storage import open_storage

        storage = open_storage(storage)
    records = [r for name in study_names for r in read_records(storage, name)]  # type: ignore[arg-type]
    return FailureReport(lines=summary_lines(records), groups=reason_groups(records),
                         interrupted=interruptions(records))
