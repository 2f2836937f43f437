"""Every registered layout gives the dense layer's output, or says why it cannot run here."""

import pytest
import torch

from sparsity_core.catalog.kernels import LAYOUT_HELP
from sparsity_core.kernels.layouts import LAYOUTS, ShrunkLinear, layout_for, make_mask

CPU = torch.device("cpu")


def masked_layer(out=64, inp=128, sparsity=0.75, pattern="unstructured", seed=0):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(out, inp, generator=gen)
    weight = weight * make_mask(weight, sparsity, pattern)
    return weight, torch.randn(out, generator=gen), torch.randn(2, 5, inp, generator=gen)


def test_catalog_names_every_registered_layout():
    assert set(LAYOUTS) == set(LAYOUT_HELP)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_equals_dense_or_says_why(name):
    layout = layout_for(name, block=16)
    weight, bias, x = masked_layer(pattern=layout.pattern, sparsity=0.5 if layout.pattern == "2:4" else 0.75)
    reason = layout.unsupported(weight, CPU, torch.float32)
    if reason is not None:  # only the CUDA-only layouts (2:4, Triton BSR) may refuse a CPU
        assert name.startswith("semi24") or name == "bsr_triton"
        assert "CUDA" in reason
        return
    out = layout.build(weight, bias)(x)
    assert out.shape == (2, 5, 64)
    torch.testing.assert_close(out, torch.nn.functional.linear(x, weight, bias), rtol=1e-5, atol=1e-5)


def test_two_of_four_mask_by_hand():
    # torchao's own hand check: [1..8] keeps the two largest of each four
    weight = torch.arange(1.0, 9.0).reshape(1, 8)
    assert (weight * make_mask(weight, 0.5, "2:4")).tolist() == [[0, 0, 3, 4, 0, 0, 7, 8]]


def test_rows_mask_keeps_the_largest_rows():
    weight = torch.tensor([[1.0, 1.0], [5.0, 5.0], [0.1, 0.1], [3.0, 3.0]])
    kept = make_mask(weight, 0.5, "rows")[:, 0].tolist()
    assert kept == [False, True, False, True]


def test_shrunk_is_physically_smaller_and_keeps_the_bias_of_pruned_rows():
    weight = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [3.0, 0.0, 4.0]])
    bias = torch.tensor([0.5, -1.0, 0.0])
    layer = ShrunkLinear(weight, bias)
    assert layer.small.shape == (2, 2)  # row 1 and column 1 are gone
    x = torch.tensor([[1.0, 7.0, 1.0]])
    assert layer(x).tolist() == [[3.5, -1.0, 7.0]]  # [1+2+.5, bias only, 3+4]


def test_bsr_refuses_a_shape_that_is_not_a_block_multiple():
    reason = layout_for("bsr", block=32).unsupported(torch.zeros(48, 64), CPU, torch.float32)
    assert "48x64" in reason and "32x32" in reason


def test_semi24_refuses_the_cpu_with_a_reason():
    for name in ("semi24", "semi24_cutlass"):
        assert "CUDA" in LAYOUTS[name].unsupported(torch.zeros(64, 64), CPU, torch.float16)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["dense", "csr", "bsr", "bsr_triton", "semi24", "semi24_direct", "semi24_cutlass",
                                  "shrunk"])
def test_cuda_layouts_equal_dense(name):
    device = torch.device("cuda", torch.cuda.current_device())
    layout = layout_for(name, block=64)
    weight, bias, x = masked_layer(128, 256, 0.5, layout.pattern)
    weight, bias, x = (t.to(device, torch.float16) for t in (weight, bias, x))
    reason = layout.unsupported(weight, device, torch.float16)
    if reason:
        pytest.skip(f"{name}: {reason}")
    try:
        module = layout.build(weight, bias)
    except RuntimeError as exc:  # e.g. CUTLASS 2:4 refusing sm 9.0: the sweep reports it
        pytest.skip(f"{name}: {exc}")
    torch.testing.assert_close(module(x).float(), torch.nn.functional.linear(x, weight, bias).float(),
                               rtol=1e-2, atol=1e-2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("tokens", [1, 5, 16, 40])
def test_cusparselt_pads_any_token_count(tokens):
    device = torch.device("cuda", torch.cuda.current_device())
    layout = layout_for("semi24_direct")
    weight, bias, _ = masked_layer(128, 256, 0.5, layout.pattern)
    weight, bias = weight.to(device, torch.float16), bias.to(device, torch.float16)
    if layout.unsupported(weight, device, torch.float16):
        pytest.skip(layout.unsupported(weight, device, torch.float16))
    x = torch.randn(tokens, 256, device=device, dtype=torch.float16)
    out = layout.build(weight, bias)(x)
    assert out.shape == (tokens, 128)
    torch.testing.assert_close(out.float(), torch.nn.functional.linear(x, weight, bias).float(), rtol=1e-2, atol=1e-2)


def test_triton_bsr_pads_tokens_to_a_tile_its_kernel_takes():
    from sparsity_core.kernels.layouts import triton_bsr_tokens

    assert [triton_bsr_tokens(t, 64) for t in (1, 5, 16, 17, 48, 64, 65, 100, 8192)] == \
        [16, 16, 16, 32, 64, 64, 128, 128, 8192]
    # checked before anything needs a GPU, so the reason reads the same on any machine
    assert "power-of-two blocks of at least 16, not 24" in layout_for("bsr_triton", block=24).unsupported(
        torch.zeros(48, 48), torch.device("cuda"), torch.float16)


def test_registry_refuses_a_name_the_catalog_does_not_offer():
    from sparsity_core.kernels.layouts import Layout, register_layout

    class Ell(Layout):
        name = "ell"

    with pytest.raises(ValueError, match="not in the catalog"):
        register_layout(Ell)
    assert LAYOUTS["csr"].description == LAYOUT_HELP["csr"]
