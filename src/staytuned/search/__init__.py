"""Hyperparameter search on Optuna: strategies, storage, study runners, workers, simulate.

Light at import: the submodules import Optuna/numpy when used.
"""
