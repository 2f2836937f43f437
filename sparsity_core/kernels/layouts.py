"""Sparse weight layouts, registered by name: how one Linear layer's weight is stored and multiplied.

    layout = LAYOUTS["csr"]
    reason = layout.unsupported(weight, device, dtype)     # None, or why this device cannot run it
    module = layout.build(weight, bias)                     # an nn.Module: (..., in) -> (..., out)

Every layout gets the *masked dense* weight (zeros where pruned) and must give the same output as
`F.linear(x, weight, bias)`; the harness checks that for every measurement (`rel_error`). Each
layout names the zero pattern it needs (`pattern`): unstructured zeros (csr, coo, bsr), exactly 2 of
every 4 (semi24) or whole rows/columns (shrunk). A layout that cannot run on a device says why
(never skipped silently, never faked with a dense kernel).
"""

from __future__ import annotations

import warnings
from typing import ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparsity_core.catalog.kernels import LAYOUT_HELP
from sparsity_core.kernels.native import csr_linear, csr_linear_unavailable, to_csr_arrays

LAYOUTS: dict[str, "Layout"] = {}

# torch warns on every CSR/BSR conversion that the format is "beta"; this lab knows, and measures
warnings.filterwarnings("ignore", message=r"Sparse (CSR|BSR) tensor support is in beta")


def register_layout(cls: type["Layout"]) -> type["Layout"]:
    """Class decorator: the implementation of the catalog's layout `name` (its description comes
    from there); a name the catalog does not offer, or one registered twice, is refused."""
    if cls.name not in LAYOUT_HELP:
        raise ValueError(f"layout {cls.name!r} is not in the catalog (sparsity_core/catalog/kernels.py)")
    if cls.name in LAYOUTS:
        raise ValueError(f"layout {cls.name!r} is registered already")
    cls.description = LAYOUT_HELP[cls.name]
    LAYOUTS[cls.name] = cls()
    return cls


class Layout:
    name: ClassVar[str]
    description: ClassVar[str]
    pattern: ClassVar[str] = "unstructured"  # unstructured | 2:4 | rows

    def unsupported(self, weight: Tensor, device: torch.device, dtype: torch.dtype) -> Optional[str]:
        """Why this layout cannot run `weight` here, or None. Checks known limits before trying."""
        return None

    def build(self, weight: Tensor, bias: Optional[Tensor]) -> nn.Module:
        raise NotImplementedError


class _Flat(nn.Module):
    """Base of the layout modules: flattens (..., in) to (tokens, in) and back."""

    out_features: int

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        return self.matmul(x.reshape(-1, x.shape[-1])).reshape(*lead, self.out_features)

    def matmul(self, x: Tensor) -> Tensor:
        raise NotImplementedError


class DenseLinear(_Flat):
    def __init__(self, weight: Tensor, bias: Optional[Tensor]):
        super().__init__()
        self.out_features = weight.shape[0]
        self.weight, self.bias = weight.contiguous(), bias

    def matmul(self, x):
        return F.linear(x, self.weight, self.bias)


class SparseMM(_Flat):
    """W_sparse @ x^T (+ bias as a column): torch's sparse kernels multiply sparse @ dense, so the
    layer computes its output transposed and returns a transposed view. With many tokens x^T
    outgrows the cache (each kept weight of a row re-reads a whole row of it); `csr_tiled` is the
    kernel that fixes that."""

    def __init__(self, sparse_weight: Tensor, bias: Optional[Tensor], out_features: int):
        super().__init__()
        self.out_features = out_features
        self.sparse_weight = sparse_weight
        self.bias_col = None if bias is None else bias.reshape(-1, 1).contiguous()

    def matmul(self, x):
        if self.bias_col is None:
            return torch.sparse.mm(self.sparse_weight, x.t()).t()
        return torch.addmm(self.bias_col, self.sparse_weight, x.t()).t()


class TritonBSRLinear(_Flat):
    """BSR through torch's Triton kernel (torch.sparse._triton_ops.bsr_dense_mm), which on a CUDA GPU
    multiplies whole blocks on the tensor cores; torch.sparse.mm / addmm on a BSR tensor go to
    cuSPARSE's bsrmm instead (measured on an H200: 3x slower than dense at 90% sparsity). Without
    tuned settings for the GPU the kernel tiles the tokens by the block (or by all of them when
    fewer), so tokens are padded to a multiple of the block, or to a power of two of at least 16."""

    def __init__(self, weight: Tensor, bias: Optional[Tensor], block: int):
        super().__init__()
        from torch.sparse._triton_ops import bsr_dense_mm

        self.out_features = weight.shape[0]
        self.bsr, self.bias, self.mm = weight.to_sparse_bsr((block, block)), bias, bsr_dense_mm

    def matmul(self, x):
        tokens = x.shape[0]
        padded = triton_bsr_tokens(tokens, self.bsr.values().shape[-1])
        dense = (F.pad(x, (0, 0, 0, padded - tokens)) if padded > tokens else x).t()
        out = self.mm(self.bsr, dense)[:, :tokens]  # (out, tokens); its transpose is the (tokens, out) view
        return (out if self.bias is None else out.add_(self.bias[:, None])).t()


def triton_bsr_tokens(tokens: int, block: int) -> int:
    """The token count TritonBSRLinear pads to: a multiple of the block, or, below one block, the
    next power of two of at least 16 (the untuned kernel's token tile must be a power of two)."""
    return -(-tokens // block) * block if tokens >= block else max(16, 1 << (tokens - 1).bit_length())


class Cusparselt24Linear(_Flat):
    """2:4 through cuSPARSELt's own entry points: the weight compressed once, the algorithm picked
    by cuSPARSELt's search for each token count (torch's SparseSemiStructuredTensor uses algorithm 0),
    the output written token-major by the kernel (transpose_result) and the bias fused; no tensor
    subclass, so no Python dispatch per call (through the subclass a call cost ~0.6 ms of CPU on an
    H200 host, 6x a dense 4096x4096 layer at 16 tokens). Tokens are padded to a multiple of 16,
    cuSPARSELt's smallest dense tile for every 2:4 dtype (int8's; 8 for 16-bit types)."""

    PAD = 16

    def __init__(self, weight: Tensor, bias: Optional[Tensor]):
        super().__init__()
        self.out_features = weight.shape[0]
        self.packed = torch._cslt_compress(weight.contiguous())
        self.bias = None if bias is None else bias.to(weight.dtype)  # the op adds it unchecked
        self.alg_ids: dict[int, int] = {}

    def matmul(self, x):
        tokens = x.shape[0]
        pad = -tokens % self.PAD
        dense = (F.pad(x, (0, 0, 0, pad)) if pad else x.contiguous()).t()  # (in, tokens): column-major, read as is
        if tokens not in self.alg_ids:  # searched once per token count, outside any CUDA graph capture
            self.alg_ids[tokens] = torch._cslt_sparse_mm_search(self.packed, dense, bias=self.bias,
                                                                transpose_result=True)
        out = torch._cslt_sparse_mm(self.packed, dense, bias=self.bias, transpose_result=True,
                                    alg_id=self.alg_ids[tokens])
        return out[:tokens] if pad else out


class TiledCSRLinear(_Flat):
    """CSR through the lab's compiled kernel (kernels/native/csr_linear.c): token tiles packed
    in cache, partial sums in registers, output written token-major."""

    def __init__(self, weight: Tensor, bias: Optional[Tensor]):
        super().__init__()
        self.out_features = weight.shape[0]
        self.csr, self.bias = to_csr_arrays(weight), bias

    def matmul(self, x):
        return csr_linear(self.csr, self.bias, x)


class ShrunkLinear(_Flat):
    """A physically smaller dense layer: only the rows (outputs) and columns (inputs) that hold a
    non-zero are kept; pruned outputs are the bias alone, as in the masked layer."""

    def __init__(self, weight: Tensor, bias: Optional[Tensor]):
        super().__init__()
        self.out_features = weight.shape[0]
        rows = weight.ne(0).any(1).nonzero().flatten()
        cols = weight.ne(0).any(0).nonzero().flatten()
        self.rows, self.cols = rows, cols
        self.all_cols = len(cols) == weight.shape[1]  # no gather needed
        self.small = weight[rows][:, cols].contiguous()
        self.small_bias = None if bias is None else bias[rows].contiguous()
        self.full_bias = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device) \
            if bias is None else bias.clone()

    def matmul(self, x):
        x = x if self.all_cols else x.index_select(1, self.cols)
        out = self.full_bias.expand(x.shape[0], -1).clone()
        out.index_copy_(1, self.rows, F.linear(x, self.small, self.small_bias))
        return out


@register_layout
class Dense(Layout):
    name = "dense"

    def build(self, weight, bias):
        return DenseLinear(weight, bias)


@register_layout
class CSR(Layout):
    name = "csr"

    def build(self, weight, bias):
        return SparseMM(weight.to_sparse_csr(), bias, weight.shape[0])


@register_layout
class CSRTiled(Layout):
    name = "csr_tiled"

    def unsupported(self, weight, device, dtype):
        if device.type != "cpu":
            return "the tiled CSR kernel is a CPU kernel (on CUDA use csr or bsr)"
        if dtype != torch.float32:
            return f"the tiled CSR kernel computes in float32, not {dtype}"
        if int(weight.count_nonzero()) >= 2**31:
            return "more than 2^31 non-zeros do not fit the kernel's int32 indices"
        return csr_linear_unavailable()

    def build(self, weight, bias):
        return TiledCSRLinear(weight, bias)


@register_layout
class COO(Layout):
    name = "coo"

    def build(self, weight, bias):
        return SparseMM(weight.to_sparse_coo().coalesce(), bias, weight.shape[0])


@register_layout
class BSR(Layout):
    name = "bsr"

    def __init__(self, block: int = 32):
        self.block = block

    def with_block(self, block: int) -> "BSR":
        return BSR(block)

    def unsupported(self, weight, device, dtype):
        out, inp = weight.shape
        if out % self.block or inp % self.block:
            return f"shape {out}x{inp} is not a multiple of the {self.block}x{self.block} block"
        return None

    def build(self, weight, bias):
        return SparseMM(weight.to_sparse_bsr((self.block, self.block)), bias, weight.shape[0])


@register_layout
class BSRTriton(BSR):
    name = "bsr_triton"

    def with_block(self, block: int) -> "BSRTriton":
        return BSRTriton(block)

    def unsupported(self, weight, device, dtype):
        if device.type != "cuda":
            return "torch's Triton BSR kernel runs on CUDA GPUs"
        if dtype not in (torch.float16, torch.bfloat16):
            return f"torch's Triton BSR kernel takes float16 / bfloat16, not {dtype}"
        if self.block < 16 or self.block & (self.block - 1):
            return f"torch's Triton BSR kernel takes power-of-two blocks of at least 16, not {self.block}"
        if not _triton_bsr_available():
            return "this torch build has no Triton BSR kernel (torch.sparse._triton_ops)"
        return super().unsupported(weight, device, dtype)

    def build(self, weight, bias):
        return TritonBSRLinear(weight, bias, self.block)


def _triton_bsr_available() -> bool:
    try:
        from torch.sparse._triton_ops import bsr_dense_mm
    except ImportError:
        return False
    return bsr_dense_mm is not None  # None in builds without Triton


class _Semi24(Layout):
    """2:4 semi-structured sparsity on the sparse tensor cores (compute capability 8.0+): semi24 and
    semi24_cutlass go through torch.sparse.to_sparse_semi_structured (cuSPARSELt, or the CUTLASS
    kernels forced, which torch builds for 8.x); semi24_direct calls cuSPARSELt itself (Cusparselt24Linear)."""

    pattern = "2:4"
    cutlass: ClassVar[bool]
    direct: ClassVar[bool] = False

    def unsupported(self, weight, device, dtype):
        if device.type != "cuda":
            return "2:4 semi-structured kernels need a CUDA GPU (sparse tensor cores)"
        if not torch.cuda.is_available():
            return "CUDA is not available in this torch build"
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:
            return f"compute capability {major}.{minor}: sparse tensor cores need 8.0 or newer"
        if self.cutlass and major != 8:  # torch builds its CUTLASS 2:4 kernels for sm 8.x alone
            return f"compute capability {major}.{minor}: torch's CUTLASS 2:4 kernels run on 8.x only (use semi24)"
        if not self.cutlass and not _cusparselt_available():
            return "this torch build has no cuSPARSELt"
        if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.int8):
            return f"{dtype} is not a 2:4 dtype"
        out, inp = weight.shape
        if out % 64 or inp % 64:  # the kernels' minimum tile, from torch's semi_structured docs
            return f"shape {out}x{inp}: both sides must be multiples of 64"
        return None

    def build(self, weight, bias):
        if self.direct:
            return Cusparselt24Linear(weight, bias)
        from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured

        before = SparseSemiStructuredTensor._FORCE_CUTLASS
        SparseSemiStructuredTensor._FORCE_CUTLASS = self.cutlass  # chooses the subclass at conversion
        try:
            return DenseLinear(to_sparse_semi_structured(weight), bias)
        finally:
            SparseSemiStructuredTensor._FORCE_CUTLASS = before


def _cusparselt_available() -> bool:
    backend = getattr(torch.backends, "cusparselt", None)
    return bool(backend and backend.is_available())


@register_layout
class Semi24(_Semi24):
    name = "semi24"
    cutlass = False


@register_layout
class Semi24Direct(_Semi24):
    name = "semi24_direct"
    cutlass = False
    direct = True


@register_layout
class Semi24Cutlass(_Semi24):
    name = "semi24_cutlass"
    cutlass = True


@register_layout
class Shrunk(Layout):
    name = "shrunk"
    pattern = "rows"

    def build(self, weight, bias):
        return ShrunkLinear(weight, bias)


def layout_for(name: str, block: int = 32) -> Layout:
    """The registered layout `name`, with the BSR block size applied."""
    layout = LAYOUTS[name]
    return layout.with_block(block) if isinstance(layout, BSR) else layout


def make_mask(weight: Tensor, sparsity: float, pattern: str) -> Tensor:
    """A bool keep-mask for the layout's pattern by |w| (the magnitude criterion): unstructured
    keeps the largest entries, 2:4 the 2 largest of each 4 along a row (sparsity is then 50%),
    rows keeps the rows with the largest L2 norm."""
    from sparsity_core.pruning.masks import unstructured_mask

    if pattern == "unstructured":
        return unstructured_mask(weight.abs(), sparsity)
    if pattern == "2:4":
        groups = weight.abs().reshape(-1, 4)
        keep = torch.zeros_like(groups, dtype=torch.bool)
        keep.scatter_(1, groups.topk(2, dim=1).indices, True)
        return keep.reshape(weight.shape)
    if pattern == "rows":
        row_keep = unstructured_mask(weight.norm(dim=1), sparsity)
        return row_keep[:, None].expand_as(weight).clone()
    raise ValueError(f"unknown pattern {pattern!r}")
