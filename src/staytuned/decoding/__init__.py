"""Decoding: generation-time hyperparameters, local and HTTP backends, serving, tuning, comparing.

Light at import: the names below resolve lazily, so ``from staytuned.decoding import
DecodingConfig`` never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from staytuned._lazy import lazy_imports

if TYPE_CHECKING:
    from staytuned.decoding.base import Backend, Generation
    from staytuned.decoding.compare import run_compare
    from staytuned.decoding.factory import BackendOptions, open_backend
    from staytuned.decoding.hf_backend import HFBackend, load_for_generation
    from staytuned.decoding.http_backend import BackendError, HTTPBackend, RetryPolicy
    from staytuned.decoding.objective import Estimate, score_config
    from staytuned.decoding.processors import FrequencyPresencePenaltyProcessor, build_processors
    from staytuned.decoding.server import create_app
    from staytuned.decoding.stopping import truncate_at_stop
    from staytuned.decoding.tune import DecodeTuneSpec, run_decode_tune
    from staytuned.hparams.decode import GREEDY, DecodingConfig

__all__ = [
    "GREEDY",
    "Backend",
    "BackendError",
    "BackendOptions",
    "DecodeTuneSpec",
    "DecodingConfig",
    "Estimate",
    "FrequencyPresencePenaltyProcessor",
    "Generation",
    "HFBackend",
    "HTTPBackend",
    "RetryPolicy",
    "build_processors",
    "create_app",
    "load_for_generation",
    "open_backend",
    "run_compare",
    "run_decode_tune",
    "score_config",
    "truncate_at_stop",
]

# The names of the TYPE_CHECKING block, each resolved from its module on first access.
_LAZY, __getattr__, __dir__ = lazy_imports(globals())
