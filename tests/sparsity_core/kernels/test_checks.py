"""The kernel preflight's memory estimate: values a reader checks by hand, and a refusal on this
machine's own free memory that names the numbers."""

import pytest

from sparsity_core.kernels.checks import free_bytes, memory_problem, point_bytes, preflight_kernel, sweep_bytes
from sparsity_core.specs import SpecError, parse_spec

# one 1024x1024 fp32 layer, 1024 tokens, dense only, eager
DENSE = parse_spec({"kind": "kernel", "shapes": [[1024, 1024]], "tokens": [1024], "sparsities": [0.5],
                    "layouts": ["dense"]})
M = 1024 * 1024


def test_point_bytes_by_hand():
    # x: 8 B/elem (fp32 draw + cast); masking: 9 B/weight; dense weight: 4 B; outputs: reference 4 + one 4
    assert point_bytes(DENSE, [1024, 1024], 1024) == 8 * M + 9 * M + 4 * M + 8 * M


def test_sweep_bytes_adds_every_cached_weight_to_the_largest_point():
    needs, shape = sweep_bytes(DENSE)
    assert shape == [1024, 1024] and needs == 4 * M + 4 * 1024 + 29 * M


def test_csr_counts_its_non_zeros_and_indices():
    spec = parse_spec({**DENSE.model_dump(), "layouts": ["dense", "csr"]})
    # csr at 50%: M/2 non-zeros x (4 value + 8 index) + 1025 row pointers x 8; one more output of 4 B
    assert point_bytes(spec, [1024, 1024], 1024) == 29 * M + (M // 2) * 12 + 1025 * 8 + 4 * M


def test_memory_problem_names_need_and_free():
    assert memory_problem(DENSE, 2**30) is None
    assert memory_problem(DENSE, None) is None  # unknown (no nvidia-smi): the run checks where it runs
    msg = memory_problem(DENSE, 32 * M)
    # 4 MiB cached + 29 MiB working set = 33 MiB > 80% of 32 MiB
    assert "needs 33 MiB at its largest point (1024x1024 at 1024 tokens), 32 MiB memory free here" in msg


def test_a_sweep_beyond_this_machines_memory_is_refused_before_it_is_queued():
    # one 1 x 268M layer at 65536 tokens: the input alone is 128 TiB
    spec = parse_spec({"kind": "kernel", "shapes": [[1, 1 << 28]], "tokens": [65536]})
    with pytest.raises(SpecError) as err:
        preflight_kernel(spec, None)
    free = free_bytes("cpu")
    assert f"{free / 2**30:.1f} GiB memory free here" in err.value.errors["shapes"]
    assert "the sweep needs 1310" in err.value.errors["shapes"]  # 1,310,7xx GiB


def test_the_preflight_stays_torch_free_on_cpu():
    import subprocess
    import sys

    code = ("import sys\nfrom sparsity_core.kernels.checks import preflight_kernel\n"
            "from sparsity_core.specs import parse_spec\n"
            "preflight_kernel(parse_spec({'kind': 'kernel'}), None)\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
