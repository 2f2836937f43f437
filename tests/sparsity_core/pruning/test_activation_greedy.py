"""TEAL's greedy allocation of activation sparsity: the last step's cut by hand, the units of a
Llama block, the greedy order on a toy block whose cheap input is known, and a run on a tiny Llama."""

import pytest
import torch
from torch import nn

from sparsity_core.pruning.activation import ACTIVATION_METHODS, plan_layers, sparsify_inputs
from sparsity_core.pruning.activation_greedy import MAX_LEVEL, STEP, allocate, block_units, greedy_block, unit_weights

TEAL = ACTIVATION_METHODS["teal"]


def test_the_last_step_is_cut_so_the_mean_is_the_target():
    weights = {"a": 0.25, "b": 0.75}
    before, after = {"a": 0.5, "b": 0.2}, {"a": 0.55, "b": 0.2}  # means 0.275 and 0.2875
    levels = allocate(after, weights, before, "a", 0.28)  # 0.005 of the step's 0.0125: 40% of it
    assert levels == pytest.approx({"a": 0.52, "b": 0.2})
    assert sum(levels[u] * w for u, w in weights.items()) == pytest.approx(0.28)


def test_a_llama_block_has_four_inputs_weighted_by_their_parameters():
    shapes = {"q_proj": (8, 8), "k_proj": (4, 8), "v_proj": (4, 8), "o_proj": (8, 8), "gate_proj": (16, 8),
              "up_proj": (16, 8), "down_proj": (8, 16)}
    group = {f"b.0.{n}": nn.Linear(i, o, bias=False) for n, (o, i) in shapes.items()}
    units = block_units(group)
    assert units == {"b.0.q_proj": ("b.0.q_proj", "b.0.k_proj", "b.0.v_proj"), "b.0.o_proj": ("b.0.o_proj",),
                     "b.0.gate_proj": ("b.0.gate_proj", "b.0.up_proj"), "b.0.down_proj": ("b.0.down_proj",)}
    # parameters: q/k/v 64 + 32 + 32 = 128, o 64, gate/up 256, down 128; 576 in all
    assert unit_weights(group, units) == pytest.approx({"b.0.q_proj": 128 / 576, "b.0.o_proj": 64 / 576,
                                                        "b.0.gate_proj": 256 / 576, "b.0.down_proj": 128 / 576})


class TwoInputs(nn.Module):
    """A toy block: fc1 and fc2 read separate halves of x; fc2's weights are 1000x smaller, so
    skipping its inputs costs the output almost nothing."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.fc1, self.fc2 = nn.Linear(20, 8, bias=False), nn.Linear(20, 8, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.randn(8, 20, generator=gen))
            self.fc2.weight.copy_(torch.randn(8, 20, generator=gen) / 1000)

    def forward(self, x):
        return torch.cat([self.fc1(x[:, :20]), self.fc2(x[:, 20:])], dim=1)


def test_greedy_spends_the_cheap_input_first_then_the_other():
    block = TwoInputs()
    group = {"fc1": block.fc1, "fc2": block.fc2}  # one unit each, equal parameters: weights 1/2, 1/2
    x = torch.randn(64, 40, generator=torch.Generator().manual_seed(1))
    run_block = lambda: [block(x)]  # noqa: E731
    with torch.no_grad():
        dense = run_block()
    found = greedy_block(run_block, group, TEAL, plan_layers(group, TEAL), [0.25, 0.5], dense)
    # 25%: fc2 alone, at 50% of its inputs; 50%: fc2 at the cap (95%), fc1 the remaining 5%
    assert found[0.25] == pytest.approx({"fc1": 0.0, "fc2": 0.5})
    assert found[0.5] == pytest.approx({"fc1": 1.0 - MAX_LEVEL, "fc2": MAX_LEVEL})
    assert STEP == 0.05
    # the levels apply per layer: each skips its level's share of its 20 inputs
    with torch.no_grad(), sparsify_inputs(group, TEAL, found[0.5]) as counts:
        block(x)
    assert counts.per_layer() == {"fc1": 1 / 20, "fc2": 19 / 20}


def test_a_target_above_the_cap_is_refused():
    block = TwoInputs()
    group = {"fc1": block.fc1, "fc2": block.fc2}
    x = torch.randn(8, 40)
    with pytest.raises(ValueError, match="above what greedy allocation reaches"):
        greedy_block(lambda: [block(x)], group, TEAL, plan_layers(group, TEAL), [0.97], [block(x).detach()])


def test_a_greedy_teal_run_on_a_tiny_llama_averages_each_block_to_the_target(tiny_llama_checkpoint):
    from sparsity_core.jobs.context import RunContext
    from sparsity_core.pruning.run import run_prune
    from sparsity_core.specs import parse_spec
    from sparsity_core.zoo import load_model, prunable_linears

    tmp_path = tiny_llama_checkpoint
    spec = parse_spec({"kind": "prune", "model": f"hf:{tmp_path}", "method": "teal", "sparsities": [0, 0.5],
                       "allocation": "greedy", "eval_samples": 16, "calibration_samples": 2, "seq_len": 32})
    ctx = RunContext()
    run_prune(spec, ctx)
    assert ctx.facts["allocation"]["kind"] == "greedy" and ctx.facts["activation"]["allocation"] == "greedy"
    linears = prunable_linears(load_model(f"hf:{tmp_path}"))
    for block in ("model.layers.0.", "model.layers.1."):
        names = [n for n in linears if n.startswith(block)]
        levels = {n: ctx.values("layer_activation_sparsity", n)[0.5] for n in names}
        params = {n: linears[n].weight.numel() for n in names}
        mean = sum(levels[n] * params[n] for n in names) / sum(params.values())
        assert mean == pytest.approx(0.5, abs=1 / 32)  # each layer rounds its level to whole inputs (32 or 64)
        assert len(set(levels.values())) > 1  # not uniform
    assert ctx.values("activation_sparsity")[0.0] == 0.0


def test_greedy_reads_a_small_calibration_unless_told_and_only_for_activation_methods():
    from sparsity_core.specs import GREEDY_CALIBRATION, SpecError, parse_spec

    base = {"kind": "prune", "model": "digits-mlp", "method": "wina", "sparsities": [0.5], "allocation": "greedy"}
    spec = parse_spec(base)
    assert (spec.calibration_samples, spec.seq_len) == GREEDY_CALIBRATION == (8, 128)
    assert parse_spec({**base, "calibration_samples": 32}).calibration_samples == 32
    with pytest.raises(SpecError) as err:
        parse_spec({**base, "method": "wanda"})
    assert "greedy allocates activation sparsity" in err.value.errors["allocation"]
