"""The methods: Wanda on hand-checkable activations, SparseGPT's reconstruction, DSnoT's refinement,
and shared tests over every registered method and every pattern it claims."""

import pytest
import torch
from torch import nn

from sparsity_core import catalog
from sparsity_core.catalog.pruning import parse_pattern
from sparsity_core.pruning import METHODS
from sparsity_core.pruning.calibrate import collect_stats
from sparsity_core.pruning.dsnot import dsnot_refine
from sparsity_core.pruning.wanda import wanda_score


def _layers(seed=0, out_f=16, in_f=32):
    torch.manual_seed(seed)
    return {"a": nn.Linear(in_f, out_f), "b": nn.Linear(in_f, out_f)}


def _stats(linears, x):
    class Both(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleDict(linears)

        def forward(self, inp):
            return self.layers["a"](inp) + self.layers["b"](inp * 2)

    return collect_stats(Both(), linears, [x], need={"norm", "mean", "hessian"})


CASES = [(name, pattern) for name, cls in sorted(METHODS.items()) for pattern in cls.entry.patterns]


@pytest.mark.parametrize("name,pattern", CASES)
def test_every_method_and_pattern_hits_its_target(name, pattern):
    linears = _layers()
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(3))
    stats = _stats(linears, x) if METHODS[name].entry.needs_calibration else None
    masks = METHODS[name](seed=0).prune(linears, 0.5, pattern=pattern, stats=stats)
    pat = parse_pattern(pattern)
    for lname, layer in linears.items():
        zeros = (layer.weight == 0)
        assert zeros.float().mean().item() == pytest.approx(0.5, abs=0.02), (name, pattern)
        assert (zeros | masks[lname]).all()  # every masked weight is zero
        if pat.kind == "nm":
            assert ((~masks[lname]).reshape(16, -1, pat.m).sum(-1) >= pat.m - pat.n).all()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_keeps_all_at_zero_sparsity(name):
    linears = _layers()
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(3))
    stats = _stats(linears, x) if METHODS[name].entry.needs_calibration else None
    before = linears["a"].weight.clone()
    METHODS[name](seed=0).prune(linears, 0.0, stats=stats)
    assert torch.allclose(linears["a"].weight, before)


def test_collect_stats_norms_and_shared_inputs():
    linears = _layers(in_f=2, out_f=2)
    x = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    stats = _stats(linears, x)
    assert stats["a"]["sq_sum"].tolist() == [10.0, 4.0]  # 1+9, 4+0
    assert stats["b"]["sq_sum"].tolist() == [40.0, 16.0]  # inputs doubled
    assert stats["a"]["mean"].tolist() == [2.0, 1.0]
    assert torch.allclose(stats["a"]["hessian"], torch.tensor([[5.0, 1.0], [1.0, 2.0]]))  # X^T X / 2


def test_wanda_mask_with_known_activation_norms():
    # same |W| everywhere, input 1 has norm 10 and input 0 norm 1: wanda keeps column 1;
    # magnitude (scores all equal) would keep by position instead
    w = torch.tensor([[1.0, -1.0, 0.5, 0.5], [-1.0, 1.0, 0.5, 0.5]])
    stats = {"sq_sum": torch.tensor([1.0, 100.0, 400.0, 0.0])}  # norms 1, 10, 20, 0
    assert wanda_score(w, stats).tolist() == [[1, 10, 10, 0], [1, 10, 10, 0]]
    layer = nn.Linear(4, 2, bias=False)
    layer.weight.data = w.clone()
    mask = METHODS["wanda"]().prune({"l": layer}, 0.5, stats={"l": stats})["l"]
    assert mask.tolist() == [[False, True, True, False]] * 2


def test_sparsegpt_reconstructs_better_than_magnitude_and_wanda():
    # correlated inputs: x = z @ A with a low-rank-ish mixing, so compensation pays off
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(512, 16, generator=gen)
    x = z @ torch.randn(16, 64, generator=gen) + 0.1 * torch.randn(512, 64, generator=gen)
    errors = {}
    for name in ("magnitude", "wanda", "sparsegpt"):
        torch.manual_seed(1)
        layer = nn.Linear(64, 32, bias=False)
        dense_out = layer(x).detach()
        stats = collect_stats(layer, {"l": layer}, [x], need={"norm", "hessian"})
        METHODS[name]().prune({"l": layer}, 0.5, pattern="unstructured", stats=stats)
        assert (layer.weight == 0).float().mean() == pytest.approx(0.5, abs=0.01)
        errors[name] = ((layer(x) - dense_out) ** 2).mean().item()
    assert errors["sparsegpt"] < 0.5 * min(errors["magnitude"], errors["wanda"]), errors


def test_dsnot_reduces_expected_error_and_keeps_counts():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(8, 16, generator=gen)
    mean = torch.rand(16, generator=gen) + 0.5  # inputs with a nonzero mean: the error has a sign
    sq = torch.ones(16)
    keep = torch.rand(8, 16, generator=gen).argsort(1) >= 8  # random half per row
    new = dsnot_refine(w, keep, mean, sq, iterations=20)
    err = lambda k: ((w * mean) * ~k).sum(1).abs()  # noqa: E731
    assert (err(new) <= err(keep) + 1e-6).all() and err(new).sum() < err(keep).sum()
    assert (new.sum(1) == keep.sum(1)).all()  # same number kept in every row
    grouped = dsnot_refine(w, keep, mean, sq, iterations=20, group=4)
    assert (grouped.reshape(8, 4, 4).sum(-1) == keep.reshape(8, 4, 4).sum(-1)).all()


def test_method_params_are_validated():
    dsnot = METHODS["dsnot"](initial="magnitude", iterations=3)
    assert (dsnot.iterations, type(dsnot.base).name) == (3, "magnitude")  # the initial mask, from the registry
    with pytest.raises(ValueError, match="wanda: no parameter 'alpha'"):
        METHODS["wanda"](alpha=1)
    with pytest.raises(ValueError, match="dsnot: parameter 'initial'"):
        METHODS["dsnot"](initial="dsnot")  # refining its own mask is not a method
    assert not METHODS["sparsegpt"].supports("heads") and METHODS["wanda"].supports("8:16")
    assert METHODS["dsnot"](initial="sparsegpt").stats() == ("norm", "mean", "hessian")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_takes_the_catalogs_parameters(name):
    """Defaults are the catalog's; a bad value or an unknown name is refused with the method and field named."""
    entry = catalog.METHODS[name]
    method = METHODS[name]()
    assert method.entry is entry and method.params.model_dump() == entry.defaults()
    assert {key: getattr(method, key) for key in entry.defaults()} == entry.defaults()
    with pytest.raises(ValueError, match=f"^{name}: no parameter 'bogus'"):
        METHODS[name](bogus=1)
    for field in entry.params.model_fields:  # a word where every parameter wants a number or a method name
        with pytest.raises(ValueError, match=f"^{name}: parameter '{field}': "):
            METHODS[name](**{field: "not-a-value"})


def test_registry_refuses_names_outside_the_catalog_and_duplicates():
    from sparsity_core.pruning.base import PruningMethod, register_method

    with pytest.raises(ValueError, match="not in the catalog"):
        register_method(type("Lottery", (PruningMethod,), {"name": "lottery"}))
    with pytest.raises(ValueError, match="registered already"):
        register_method(type("Again", (PruningMethod,), {"name": "wanda"}))


def test_calibration_hooks_are_removed_after_an_error():
    layer = nn.Linear(4, 4)

    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, x):
            self.layer(x)
            raise RuntimeError("forced failure mid-forward")

    with pytest.raises(RuntimeError, match="forced"):
        collect_stats(Boom(), {"l": layer}, [torch.ones(2, 4)], need={"norm"})
    assert not layer._forward_pre_hooks
