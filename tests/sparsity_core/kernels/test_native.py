"""The compiled CSR kernel (csr_tiled) against F.linear, across tile edges, thread counts and
shapes that do not fill a vector; and its refusal when no compiler is there. The compiled gathered
GEMV (activation sparsity at batch 1) by hand, against W[:, idx] @ x[idx], and its refusals."""

import os

import pytest
import torch
import torch.nn.functional as F

from sparsity_core.kernels import native
from sparsity_core.kernels.layouts import layout_for

# CI installs a compiler and sets SPARSITY_REQUIRE_NATIVE, so these run there instead of skipping
needs_kernel = pytest.mark.skipif(native.csr_linear_unavailable() is not None
                                  and not os.environ.get("SPARSITY_REQUIRE_NATIVE"),
                                  reason=str(native.csr_linear_unavailable()))


def sparse_weight(out, inp, sparsity, seed=0):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(out, inp, generator=gen)
    return weight * (torch.rand(out, inp, generator=gen) >= sparsity)


@needs_kernel
def test_by_hand():
    weight = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])  # row 1 is empty: the bias alone
    x = torch.tensor([[1.0, 5.0, 1.0], [2.0, 0.0, -1.0]])
    y = native.csr_linear(native.to_csr_arrays(weight), torch.tensor([0.5, -1.0]), x)
    assert y.tolist() == [[3.5, -1.0], [0.5, -1.0]]


@needs_kernel
@pytest.mark.parametrize("tokens", [1, 31, 32, 33, 64, 65, 128, 129, 300])  # every tile width and its edges
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matches_dense_across_tiles_and_threads(tokens, threads):
    weight = sparse_weight(37, 50, 0.8)  # 37 rows: a partial row block; 50 inputs: not a multiple of 16
    bias = torch.randn(37, generator=torch.Generator().manual_seed(1))
    x = torch.randn(tokens, 50, generator=torch.Generator().manual_seed(2))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = native.csr_linear(native.to_csr_arrays(weight), bias, x)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(y, F.linear(x, weight, bias), rtol=1e-5, atol=1e-5)


@needs_kernel
def test_layout_module_takes_batched_and_strided_input_without_bias():
    weight = sparse_weight(64, 96, 0.9)
    x = torch.randn(3, 96, 7).transpose(1, 2)  # (3, 7, 96), not contiguous
    module = layout_for("csr_tiled").build(weight, None)
    torch.testing.assert_close(module(x), F.linear(x, weight), rtol=1e-5, atol=1e-5)


@needs_kernel
def test_wrong_width_is_refused():
    with pytest.raises(ValueError, match="does not match a 4x8 weight"):
        native.csr_linear(native.to_csr_arrays(torch.ones(4, 8)), None, torch.ones(2, 9))


def test_no_compiler_is_a_reason_not_a_crash(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    native._load.cache_clear()
    try:
        reason = layout_for("csr_tiled").unsupported(torch.ones(4, 4), torch.device("cpu"), torch.float32)
        assert reason is not None and "/nonexistent/cc" in reason
    finally:
        native._load.cache_clear()


def test_other_devices_and_dtypes_are_refused():
    layout = layout_for("csr_tiled")
    assert "CPU kernel" in layout.unsupported(torch.ones(4, 4), torch.device("cuda"), torch.float32)
    assert "float32" in layout.unsupported(torch.ones(4, 4), torch.device("cpu"), torch.float16)


needs_gather = pytest.mark.skipif(native.gather_gemv_unavailable() is not None
                                  and not os.environ.get("SPARSITY_REQUIRE_NATIVE"),
                                  reason=str(native.gather_gemv_unavailable()))


@needs_gather
def test_gathered_gemv_by_hand():
    w = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # W (out 2, in 3); keep x0 = 10 and x2 = 30
    y = native.gather_gemv(w.t().contiguous(), torch.tensor([0, 2]), torch.tensor([10.0, 30.0]))
    assert y.tolist() == [100.0, 220.0]  # 10 * [1, 4] + 30 * [3, 6]
    assert native.gather_gemv(w.t().contiguous(), torch.tensor([], dtype=torch.int64), torch.tensor([])).tolist() == [0, 0]


@needs_gather
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("out,kept", [(1, 7), (513, 5), (1100, 64)])  # a row, a slice edge, several slices
def test_gathered_gemv_matches_the_kept_columns_matmul(out, kept, threads):
    gen = torch.Generator().manual_seed(out)
    w, x = torch.randn(out, 96, generator=gen), torch.randn(96, generator=gen)
    idx = torch.randperm(96, generator=gen)[:kept]  # any order, as top-k gives them
    y = native.gather_gemv(w.t().contiguous(), idx, x[idx], threads=threads)
    torch.testing.assert_close(y, w[:, idx] @ x[idx])


@needs_gather
def test_gathered_gemv_refuses_an_index_past_the_inputs_and_a_transposed_view():
    wt = torch.ones(3, 2)
    with pytest.raises(ValueError, match="outside the 3 inputs"):
        native.gather_gemv(wt, torch.tensor([3]), torch.ones(1))
    with pytest.raises(ValueError, match="contiguous float32"):
        native.gather_gemv(torch.ones(2, 3).t(), torch.tensor([0]), torch.ones(1))
