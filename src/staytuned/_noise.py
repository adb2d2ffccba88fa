"""Other libraries' deprecation notices stay off a user's screen (``--verbose`` shows them).

transformers, torch, peft, Optuna ... announce API changes with ``FutureWarning`` and
``DeprecationWarning`` addressed to *their* callers' code; a user of staytuned can do nothing
about them, and a study repeats them once per trial. Warnings attributed to staytuned's own
modules, and every other category (a slow precision, a tokenizer without a pad token), still
show; so do other libraries' log errors. Called by the CLI commands and in every worker process they start.
"""

from __future__ import annotations

import logging
import os
import warnings

_DEPRECATIONS = (FutureWarning, DeprecationWarning, PendingDeprecationWarning)
#: Set ("1") by a command run with --verbose: the worker processes it spawns inherit it.
VERBOSE_ENV = "STAYTUNED_VERBOSE"


def set_verbose(verbose: bool) -> None:
    """Record a command's --verbose for the worker processes it starts."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)


def quiet_third_party_warnings(verbose: bool = False) -> None:
    """Ignore deprecation warnings not raised from ``staytuned.*`` (nothing when ``verbose``, or
    in a worker process of a command run with --verbose)."""
    if verbose or os.environ.get(VERBOSE_ENV) == "1":
        return
    # bitsandbytes logs at import, on CPUs with AVX512-BF16, that an optional kernel from the Hub
    # is not installed: nothing to act on (its errors still show).
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    for category in _DEPRECATIONS:
        warnings.filterwarnings("ignore", category=category)
    for category in _DEPRECATIONS:  # inserted in front: staytuned's own stay visible
        warnings.filterwarnings("default", category=category, module=r"staytuned(\.|$)")
    try:
        from optuna.exceptions import ExperimentalWarning
    except ImportError:  # pragma: no cover - optuna is a dependency
        return
    warnings.filterwarnings("ignore", category=ExperimentalWarning)
