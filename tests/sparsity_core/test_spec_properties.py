"""Property test: a spec of any kind, valid or hostile, is refused with a SpecError in under a
second or accepted; never another exception. Also through the CLI's path (`_spec_text`, then the
jobs layer's preflight, which reads parent runs from the store) for bundled models.

Hostile values: wrong types, huge and non-finite numbers, deep nesting, long strings, unknown
keys, huge lists. Derandomized, so CI sees the same examples every time."""

import json
import math
import time
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsity_core.cli import _spec_text
from sparsity_core.jobs.api import preflight
from sparsity_core.specs import SPECS, BaseSpec, SpecError, parse_spec

KINDS = list(SPECS)
FIELDS = sorted({name for cls in SPECS.values() for name in cls.model_fields} | {"lambda", "params"})
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

HOSTILE_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**31, max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e30, -1e30, math.nan, math.inf, 2**70]),
    st.text(max_size=30), st.sampled_from(["", "hf:", "hf:" + "a" * 400, "hf:~nobody/x", "hf:a\x00b", "digits-mlp",
                                           "minilm-l6", "cuda:7", "abc", "2:4", "block:0x0", "x" * 6000]))


def nested(depth: int):
    value: object = 0
    for _ in range(depth):
        value = {"a": value} if depth % 2 else [value]
    return value


HOSTILE = st.one_of(
    HOSTILE_SCALARS,
    st.lists(HOSTILE_SCALARS, max_size=8),
    st.lists(st.lists(st.integers(-5, 70000), max_size=3), max_size=5),
    st.dictionaries(st.text(max_size=8), HOSTILE_SCALARS, max_size=4),
    st.sampled_from([nested(50), nested(5000), list(range(100_000)), [[16384, 16384]] * 3, [0.5] * 40]),
)

# values a page would send, per field: accepted specs come from these
PLAUSIBLE = {
    "model": st.sampled_from(["digits-mlp", "minilm-l6", "smollm2-135m"]),
    "sparsities": st.lists(st.sampled_from([0.0, 0.5, 0.7, 0.9]), min_size=1, max_size=4, unique=True),
    "seed": st.integers(0, 2**32 - 1),
    "method": st.sampled_from(["magnitude", "wanda", "sparsegpt", "dsnot", "random"]),
    "shapes": st.lists(st.lists(st.integers(1, 4096), min_size=2, max_size=2), max_size=3),
    "tokens": st.lists(st.integers(1, 512), min_size=1, max_size=3),
    "layouts": st.lists(st.sampled_from(["dense", "csr", "bsr", "semi24"]), min_size=1, max_size=3),
}


@st.composite
def specs(draw):
    """A dict spec: a kind (or a hostile one), some plausible fields, some hostile fields."""
    kind = draw(st.one_of(st.sampled_from(KINDS), HOSTILE_SCALARS))
    spec = {"kind": kind}
    for name in draw(st.lists(st.sampled_from(sorted(PLAUSIBLE)), max_size=4, unique=True)):
        spec[name] = draw(PLAUSIBLE[name])
    if kind == "prune":
        spec.setdefault("sparsities", [0.5])
    for name in draw(st.lists(st.sampled_from([*FIELDS, "colour", "__class__", ""]), max_size=3, unique=True)):
        spec[name] = draw(HOSTILE)
    return spec


OUTCOMES: Counter = Counter()  # printed with -s: how many examples were refused / accepted


def teardown_module():
    print(f"\nspec property examples: {dict(OUTCOMES)}")


def refused_or_accepted(call) -> str:
    start = time.perf_counter()
    try:
        result = call()
        outcome = "accepted"
        assert result is None or isinstance(result, BaseSpec)
    except SpecError as exc:
        assert str(exc) and "\n" not in str(exc)[:500] and "Traceback" not in str(exc)
        outcome = "refused"
    assert time.perf_counter() - start < 1.0, "took a second or more"
    OUTCOMES[outcome] += 1
    return outcome


@SETTINGS
@given(specs())
def test_any_spec_is_refused_cleanly_or_accepted(spec):
    refused_or_accepted(lambda: parse_spec(spec))


@SETTINGS
@given(specs())
def test_any_spec_text_through_the_cli_path(spec):
    try:
        text = json.dumps(spec)  # NaN/Infinity are written as JSON's extension, as a file could hold
    except (ValueError, RecursionError):
        return

    def parse_and_check():
        parsed = parse_spec(_spec_text(text))
        if parsed.model in ("digits-mlp", "minilm-l6", "smollm2-135m"):
            preflight(parsed)  # the store's parent rows, the model's skeleton: no weights loaded
        return parsed

    refused_or_accepted(parse_and_check)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_text_is_refused_cleanly(blob):
    refused_or_accepted(lambda: parse_spec(blob))


@st.composite
def valid_specs(draw):
    """Specs a page would send: every one must be accepted."""
    kind = draw(st.sampled_from(["prune", "kernel", "explain"]))
    seed = draw(PLAUSIBLE["seed"])
    if kind == "prune":
        return {"kind": kind, "model": "digits-mlp", "method": draw(st.sampled_from(["magnitude", "random", "wanda"])),
                "sparsities": draw(PLAUSIBLE["sparsities"]), "seed": seed}
    if kind == "kernel":
        return {"kind": kind, "shapes": draw(PLAUSIBLE["shapes"].filter(bool)), "tokens": draw(PLAUSIBLE["tokens"]),
                "layouts": draw(PLAUSIBLE["layouts"]), "seed": seed}
    return {"kind": kind, "model": "digits-mlp", "test_index": draw(st.integers(0, 300)),
            "lambda": draw(st.floats(1e-6, 1.0)), "top_k": draw(st.integers(1, 100)), "seed": seed}


@settings(max_examples=100, deadline=None, derandomize=True)
@given(valid_specs())
def test_a_valid_spec_is_accepted(spec):
    assert refused_or_accepted(lambda: parse_spec(spec)) == "accepted"
