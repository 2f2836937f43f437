"""The Triton gathered GEMV: its grid split by hand, its sum on a GPU (or, with TRITON_INTERPRET=1,
Triton's CPU interpreter); without Triton the kernel lab says why and the kernel tests skip."""

import pytest
import torch

from sparsity_core.kernels.triton_gemv import BLOCK_K, slices_for, triton, triton_unavailable

CUDA = torch.cuda.is_available()
runs_here = triton is not None and triton_unavailable(torch.device("cuda" if CUDA else "cpu"), torch.float32) is None
needs_triton = pytest.mark.skipif(not runs_here, reason="needs Triton with a CUDA GPU (or TRITON_INTERPRET=1)")
DEVICE = "cuda" if CUDA else "cpu"


def test_slices_give_every_multiprocessor_work_and_none_empty():
    # SmolLM2 q_proj at 65%: 202 kept of 576 inputs, 576 outputs -> 5 blocks of 128; 7 steps of 32 rows
    assert slices_for(202, 576, programs=4 * 132) == (7, 32)  # one step per slice: 5 x 7 = 35 programs
    # Llama-7B down_proj at 25%: 8256 kept, 4096 outputs -> 32 blocks; 528 / 32 -> 17 slices wanted
    slices, per_slice = slices_for(8256, 4096, programs=4 * 132)
    assert per_slice % BLOCK_K == 0 and (slices - 1) * per_slice < 8256 <= slices * per_slice
    assert (slices, per_slice) == (17, 512)  # 258 steps / 17 -> 16 steps of 32 rows per slice
    assert slices_for(1, 10, programs=100) == (1, 32)


def test_the_reason_is_said_where_it_cannot_run():
    if triton is None:
        assert "Triton is not installed" in triton_unavailable(torch.device("cpu"), torch.float16)
    else:
        assert "not torch.int8" in triton_unavailable(torch.device("cuda"), torch.int8)


@pytest.mark.cuda
@needs_triton
def test_hand_computed_gather():
    from sparsity_core.kernels.triton_gemv import triton_gather_gemv

    weight = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], device=DEVICE)  # W (out 2, in 4)
    idx = torch.tensor([0, 2], device=DEVICE)
    values = torch.tensor([1.0, 10.0], device=DEVICE)  # x[0] = 1, x[2] = 10, the rest skipped
    out = triton_gather_gemv(weight.t().contiguous(), idx, values)
    assert out.tolist() == [1 + 30, 5 + 70]


@pytest.mark.cuda
@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_matches_the_dense_product_of_the_kept_columns(dtype):
    from sparsity_core.kernels.triton_gemv import triton_gather_gemv

    gen = torch.Generator().manual_seed(0)
    weight, x = torch.randn(300, 200, generator=gen), torch.randn(200, generator=gen)
    idx = torch.randperm(200, generator=gen)[:70].sort().values
    ref = weight[:, idx] @ x[idx]
    w_t = weight.t().contiguous().to(DEVICE, dtype)
    out = triton_gather_gemv(w_t, idx.to(DEVICE), x[idx].to(DEVICE, dtype))
    assert out.dtype == dtype and out.shape == (300,)
    torch.testing.assert_close(out.float().cpu(), ref, rtol=1e-2 if dtype == torch.float16 else 1e-5,
                               atol=2e-2 if dtype == torch.float16 else 1e-4)


@pytest.mark.cuda
@pytest.mark.skipif(not (CUDA and runs_here), reason="needs Triton and a CUDA GPU")
def test_the_kernel_lab_times_it_as_a_cuda_graph():
    from sparsity_core.kernels.activation import time_layer

    gen = torch.Generator().manual_seed(0)
    weight = (torch.randn(576, 576, generator=gen) / 24).to("cuda", torch.float16)
    x = torch.randn(576, generator=gen).to("cuda", torch.float16)
    row = time_layer(weight, x, None, 0.65, torch.device("cuda"), warmup=2, repeats=5,
                     own=("gathered_triton",), l2_flush=True)
    assert row["kept"] == 202 and row["rel_error"] < 1e-2
    assert all(row[f"{call}_ms"] > 0 for call in ("dense", "gathered", "topk+gathered", "gathered_triton"))
