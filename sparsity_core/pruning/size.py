"""What a pruned model weighs: nonzeros, and bytes if stored dense, as CSR, or as 2:4.

Counts cover the pruned layers (embeddings and heads stay dense and are the same in every
format). CSR: values + one int32 column index per nonzero + int32 row pointers. 2:4 (the
semi-structured layout of cuSPARSELt / torch.sparse): half the values plus a 2-bit position per
kept value; it exists only when every group of 4 along a row has at most 2 nonzeros.
"""

from __future__ import annotations

from torch import Tensor

INDEX_BYTES = 4  # int32 column indices and row pointers


def size_report(weights: dict[str, Tensor]) -> dict[str, float]:
    """{nonzeros, params, bytes_dense, bytes_csr[, bytes_2to4]} over (out, in)-shaped weights."""
    nnz = params = dense = csr = semi = 0
    fits_24 = True
    for w in weights.values():
        elem = w.element_size()
        rows, cols = w.shape[0], w.numel() // w.shape[0]
        n = int((w != 0).sum())
        nnz, params = nnz + n, params + w.numel()
        dense += w.numel() * elem
        csr += n * (elem + INDEX_BYTES) + (rows + 1) * INDEX_BYTES
        if cols % 4 or ((w.reshape(rows, -1, 4) != 0).sum(-1) > 2).any():
            fits_24 = False
        semi += w.numel() // 2 * elem + w.numel() // 8  # 2 bits for each of numel/2 kept values
    out = {"nonzeros": float(nnz), "params": float(params), "bytes_dense": float(dense),
           "bytes_csr": float(csr)}
    if fits_24:
        out["bytes_2to4"] = float(semi)
    return out
