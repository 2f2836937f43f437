"""Calibration statistics of the prunable layers' inputs: in one pass of the dense model, or block
by block through the model as it is being pruned (the Wanda and SparseGPT papers' way).

    stats = collect_stats(handle.model, linears, calib.batches, need={"norm", "hessian"})   # one_pass
    stats["model.layers.0.self_attn.q_proj"]["sq_sum"]   # (in,) sum of x_j^2 over tokens

    def prune_block(i, linears, stats):                   # sequential: one block's stats at a time
        method.prune(linears, 0.5, stats=stats)           # then the pruned block's outputs feed block i + 1
    block_by_block(handle, calib.batches, method.stats(), prune_block)

Per layer: `sq_sum` (Wanda's ||X_j||^2), `mean` (DSnoT's E[x_j]), `hessian` (SparseGPT's
X X^T / tokens). Padding tokens are left out. Layers fed the same tensor (q/k/v, gate/up) share
one accumulator (and one result), which saves a third of the Hessian work on a Llama block.

`collect_stats` holds every layer's statistics at once (for SparseGPT on a 7B Llama, tens of GB
of Hessians). `block_by_block` follows Sun et al. (2023) and Frantar & Alistarh (2023): a hook on
block 0 catches its inputs (hidden states and every keyword the model passes: attention mask,
position ids, Llama's rotary embeddings) and stops the forward (the papers' "Catcher"); then for
each block, hooks collect its linears' statistics on those inputs, `visit` prunes the block, the
pruned block runs again on the same inputs, and its outputs are the next block's inputs. Only one
block's statistics are alive at a time, on the model's device, so block i's statistics come from
inputs already changed by the pruned blocks 0..i-1 (block 0's equal the one-pass ones). A model
without blocks (digits-mlp) goes layer by layer instead: each layer's statistics come from a
whole forward of the model whose earlier layers are already pruned. Hooks are removed in `finally`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterable, Optional

import torch
from torch import Tensor, nn

from sparsity_core.pruning.base import in_features
from sparsity_core.zoo import ModelHandle, blocks, prunable_linears
from sparsity_core.zoo.adapters import block_prefix

Stats = dict[str, dict[str, Tensor]]
# visit(block index, that block's linears, their statistics): prunes them in place (any return is ignored)
Visit = Callable[[int, dict[str, nn.Module], Stats], Any]


class _Acc:
    def __init__(self, n: int, need: set[str], device: torch.device | str = "cpu"):
        self.count, self.device, self._result = 0, device, None
        self.sq_sum = torch.zeros(n, dtype=torch.float64, device=device)
        self.sum = torch.zeros(n, dtype=torch.float64, device=device) if "mean" in need else None
        self.hessian = torch.zeros(n, n, dtype=torch.float32, device=device) if "hessian" in need else None

    def add(self, x: Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).float().to(self.device)
        self.count += x.shape[0]
        self.sq_sum += (x.double() ** 2).sum(0)
        if self.sum is not None:
            self.sum += x.double().sum(0)
        if self.hessian is not None:
            self.hessian.addmm_(x.t(), x)

    def result(self) -> dict[str, Tensor]:
        """The statistics; computed once, so layers sharing this accumulator share the tensors."""
        if self._result is None:
            out = {"sq_sum": self.sq_sum.float(), "count": torch.tensor(self.count)}
            if self.sum is not None:
                out["mean"] = (self.sum / max(self.count, 1)).float()
            if self.hessian is not None:
                self.hessian /= max(self.count, 1)  # in place: no second n x n copy
                out["hessian"] = self.hessian
            self._result = out
        return self._result


class _StatHooks:
    """Forward pre-hooks accumulating the input statistics of `linears` while they are entered.
    Set `pad_mask` to the batch's attention mask before each forward so padding is left out."""

    def __init__(self, linears: dict[str, nn.Module], need: Iterable[str], device: torch.device | str = "cpu"):
        self.linears, self.need, self.device = linears, set(need), device
        self.accs: dict[str, _Acc] = {}
        self.pad_mask: Optional[Tensor] = None
        self._last: tuple[Any, Optional[_Acc]] = (None, None)
        self._handles: list = []

    def new_batch(self, pad_mask: Optional[Tensor] = None) -> None:
        self.pad_mask, self._last = pad_mask, (None, None)

    def _hook_for(self, name: str, module: nn.Module):
        def hook(_mod, args):
            x = args[0]
            last_input, last_acc = self._last
            if x is last_input and name not in self.accs:  # same tensor as the previous layer
                self.accs[name] = last_acc
                return
            if name not in self.accs:
                self.accs[name] = _Acc(in_features(module), self.need, self.device)
            if self.accs[name] is last_acc and x is last_input:
                return  # shared accumulator: already counted
            mask = self.pad_mask
            if mask is not None and x.dim() == 3 and x.shape[:2] == mask.shape:
                x = x[mask.to(x.device).bool()]
            self.accs[name].add(x)
            self._last = (args[0], self.accs[name])
        return hook

    def __enter__(self) -> "_StatHooks":
        self._handles = [m.register_forward_pre_hook(self._hook_for(n, m)) for n, m in self.linears.items()]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def result(self) -> Stats:
        return {name: self.accs[name].result() for name in self.linears if name in self.accs}


def _forward(model: nn.Module, batch: Any, device: torch.device) -> Any:
    if isinstance(batch, dict):
        return model(**{k: v.to(device) for k, v in batch.items()})
    return model(batch.to(device))


def _pad_mask(batch: Any) -> Optional[Tensor]:
    return batch.get("attention_mask") if isinstance(batch, dict) else None


@contextmanager
def _no_cache(model: nn.Module):
    """No KV cache while calibrating (the papers set use_cache = False): no cache object is kept."""
    config = getattr(model, "config", None)
    before = getattr(config, "use_cache", None)
    if before is not None:
        config.use_cache = False
    try:
        yield
    finally:
        if before is not None:
            config.use_cache = before


@torch.no_grad()
def collect_stats(model: nn.Module, linears: dict[str, nn.Module], batches: Iterable,
                  need: Iterable[str], on_batch: Optional[Callable[[int, int], None]] = None) -> Stats:
    """Run `batches` through the dense `model`; return every layer's input statistics at once."""
    batches = list(batches)
    device = next(model.parameters()).device
    with _StatHooks(linears, need) as hooks, _no_cache(model):
        for i, batch in enumerate(batches):
            hooks.new_batch(_pad_mask(batch))
            _forward(model, batch, device)
            if on_batch:
                on_batch(i + 1, len(batches))
    return hooks.result()


def block_groups(handle: ModelHandle) -> list[dict[str, nn.Module]]:
    """The prunable linears block by block, in model order; for a model without blocks (an MLP)
    each layer is its own group."""
    linears = prunable_linears(handle)
    if not blocks(handle):
        return [{name: layer} for name, layer in linears.items()]
    prefix = block_prefix(handle)
    groups = [{n: m for n, m in linears.items() if n.startswith(f"{prefix}.{i}.")} for i in range(len(blocks(handle)))]
    return [g for g in groups if g]


class _Caught(Exception):
    """Raised by the hook on block 0 once it has its inputs: the rest of the forward is not needed."""


@torch.no_grad()
def catch_block_inputs(model: nn.Module, first: nn.Module, batches: list) -> list[tuple[list, dict]]:
    """(args, kwargs) block `first` is called with, for every batch (on the model's device)."""
    caught: list[tuple[list, dict]] = []

    def grab(_mod, args, kwargs):
        caught.append((list(args), dict(kwargs)))
        raise _Caught

    device = next(model.parameters()).device
    handle = first.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        for batch in batches:
            try:
                _forward(model, batch, device)
            except _Caught:
                pass
    finally:
        handle.remove()
    return caught


def _hidden(output: Any) -> Tensor:
    """A block's hidden states (transformers 5 blocks return a tensor, older ones a tuple)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def _set_hidden(inputs: tuple[list, dict], hidden: Tensor) -> None:
    args, kwargs = inputs
    if args:
        args[0] = hidden
    else:
        kwargs["hidden_states"] = hidden


@torch.no_grad()
def block_by_block(handle: ModelHandle, batches: Iterable, need: Iterable[str], visit: Visit) -> None:
    """Sequential calibration: `visit(i, linears, stats)` for each block in order, with the stats
    of block i's inputs after the blocks before it were visited (see the module docstring)."""
    batches, model, stack = list(batches), handle.model, blocks(handle)
    if not stack:
        return _layer_by_layer(model, block_groups(handle), batches, need, visit)
    device, prefix, linears = handle.device, block_prefix(handle), prunable_linears(handle)
    with _no_cache(model):
        # Step 1: the inputs of block 0 (embeddings, masks, position embeddings), then stop
        inputs = catch_block_inputs(model, stack[0], batches)
        masks = [_pad_mask(b) for b in batches]
        for i, block in enumerate(stack):
            group = {n: m for n, m in linears.items() if n.startswith(f"{prefix}.{i}.")}
            if group:
                # Step 2: this block's statistics on its inputs (statistics only: no outputs are kept,
                # so one copy of the calibration activations is alive, not two)
                with _StatHooks(group, need, device) as hooks:
                    for (args, kwargs), mask in zip(inputs, masks):
                        hooks.new_batch(mask)
                        block(*args, **kwargs)
                # Step 3: prune the block; its statistics go out of scope with the visit
                visit(i, group, hooks.result())
                del hooks
            # Step 4: the pruned block's outputs are the next block's inputs
            outputs = [_hidden(block(*args, **kwargs)) for args, kwargs in inputs]
            for item, hidden in zip(inputs, outputs):
                _set_hidden(item, hidden)
            del outputs


def _layer_by_layer(model: nn.Module, groups: list[dict[str, nn.Module]], batches: list, need: Iterable[str],
                    visit: Visit) -> None:
    """Sequential calibration of a model without blocks: one whole forward per layer group."""
    device = next(model.parameters()).device
    with _no_cache(model):
        for i, group in enumerate(groups):
            with _StatHooks(group, need, device) as hooks:
                for batch in batches:
                    hooks.new_batch(_pad_mask(batch))
                    _forward(model, batch, device)
            visit(i, group, hooks.result())
            del hooks
