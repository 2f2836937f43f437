"""Sparsity Lab's compute core: pruning, SAEs, representer points and sparse-kernel latency.

Usable with no Streamlit at all: specs in, results into the store (see `jobs` and `cli`).
"""
