"""Decoding: generation-time hyperparameters, local and HTTP backends, serving, tuning, comparing.

Light at import: the names below resolve lazily, so ``from staytuned.decoding import
DecodingConfig`` never imports torch.
"""

from __future__ import annotations

from staytuned._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "DecodingConfig": "staytuned.hparams.decode",
    "GREEDY": "staytuned.hparams.decode",
    "Generation": "staytuned.decoding.base",
    "Backend": "staytuned.decoding.base",
    "truncate_at_stop": "staytuned.decoding.stopping",
    "HFBackend": "staytuned.decoding.hf_backend",
    "load_for_generation": "staytuned.decoding.hf_backend",
    "HTTPBackend": "staytuned.decoding.http_backend",
    "BackendError": "staytuned.decoding.http_backend",
    "RetryPolicy": "staytuned.decoding.http_backend",
    "FrequencyPresencePenaltyProcessor": "staytuned.decoding.processors",
    "build_processors": "staytuned.decoding.processors",
    "create_app": "staytuned.decoding.server",
    "BackendOptions": "staytuned.decoding.factory",
    "open_backend": "staytuned.decoding.factory",
    "score_config": "staytuned.decoding.objective",
    "Estimate": "staytuned.decoding.objective",
    "DecodeTuneSpec": "staytuned.decoding.tune",
    "run_decode_tune": "staytuned.decoding.tune",
    "run_compare": "staytuned.decoding.compare",
}


__getattr__, __dir__ = lazy_attributes('staytuned.decoding', _LAZY, globals())
