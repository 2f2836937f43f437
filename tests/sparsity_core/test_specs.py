import pytest

from sparsity_core.specs import SCHEMA_VERSION, PruneSpec, SpecError, parse_spec

GOOD = {"kind": "prune", "model": "digits-mlp", "method": "magnitude", "scope": "global",
        "sparsities": [0.9, 0, 0.5], "seed": 0}


def test_valid_spec_sorts_sparsities_and_keeps_fields():
    spec = parse_spec(GOOD)
    assert isinstance(spec, PruneSpec)
    assert spec.sparsities == [0.0, 0.5, 0.9]
    assert spec.scope == "global" and spec.method_name == "magnitude"
    assert SCHEMA_VERSION == 3


@pytest.mark.parametrize("change, field, words", [
    ({"sparsities": [0.5, 1.0]}, "sparsities", "[0, 1)"),
    ({"sparsities": [-0.1]}, "sparsities", "[0, 1)"),
    ({"sparsities": []}, "sparsities", "at least 1"),
    ({"model": "gpt-17"}, "model", "unknown model 'gpt-17'"),
    ({"model": "hf:./does/not/exist"}, "model", "does not exist"),
    ({"method": "telepathy"}, "method", "unknown pruning method"),
    ({"scope": "row"}, "scope", "'layer' or 'global'"),
    ({"colour": "red"}, "colour", "Extra inputs"),
])
def test_bad_input_names_the_field(change, field, words):
    with pytest.raises(SpecError) as err:
        parse_spec({**GOOD, **change})
    assert field in err.value.errors
    assert words in err.value.errors[field]


def test_unknown_kind_and_bad_json():
    with pytest.raises(SpecError, match="unknown kind"):
        parse_spec({"kind": "teleport", "model": "digits-mlp"})
    with pytest.raises(SpecError, match="not valid JSON"):
        parse_spec("{not json")


def test_hf_local_path_needs_a_config(tmp_path):
    with pytest.raises(SpecError, match="no config.json"):
        parse_spec({**GOOD, "model": f"hf:{tmp_path}"})
    (tmp_path / "config.json").write_text("{}")
    assert parse_spec({**GOOD, "model": f"hf:{tmp_path}"}).model == f"hf:{tmp_path}"


def test_method_parameters_are_typed_and_land_on_their_own_field():
    spec = parse_spec({**GOOD, "scope": "layer", "method": "sparsegpt"})
    assert spec.params == {"damp": 0.01}  # the catalog's default, written into the stored spec
    for params, field, words in [({"damp": "abc"}, "params.damp", "valid number"),
                                 ({"damp": -1}, "params.damp", "greater than 0"),
                                 ({"colour": 1}, "params.colour", "Extra inputs")]:
        with pytest.raises(SpecError) as err:
            parse_spec({**GOOD, "scope": "layer", "method": "sparsegpt", "params": params})
        assert words in err.value.errors[field]
    with pytest.raises(SpecError) as err:
        parse_spec({**GOOD, "scope": "layer", "method": "dsnot", "params": {"iterations": "many", "initial": "dsnot"}})
    assert set(err.value.errors) == {"params.iterations", "params.initial"}


@pytest.mark.parametrize("change, field, words", [
    ({"seed": 2**70}, "seed", "less than or equal to 4294967295"),
    ({"method": "wanda", "scope": "layer", "pattern": "heads"}, "pattern", "not by wanda"),
    ({"pattern": "2:4", "scope": "layer", "sparsities": [0.3]}, "pattern", "below it"),
    ({"pattern": "2:4"}, "pattern", "global scope needs the unstructured pattern"),
])
def test_cross_field_checks_name_the_field(change, field, words):
    with pytest.raises(SpecError) as err:
        parse_spec({**GOOD, **change})
    assert words in err.value.errors[field]


def test_a_version_1_spec_is_upgraded_on_read():
    # v1 stored {} for "the method's defaults of the day"; v2 writes them out
    stored = {"kind": "prune", "model": "digits-mlp", "method": "dsnot", "sparsities": [0.5], "params": {}}
    spec = parse_spec(stored, version=1)
    assert spec.params == {"initial": "wanda", "iterations": 50}
    assert parse_spec({**stored, "params": {"iterations": 7}}, version=1).params["iterations"] == 7


@pytest.mark.parametrize("version", [0, SCHEMA_VERSION + 1, 10**30, "2"])
def test_a_spec_version_this_release_cannot_read_is_refused(version):
    with pytest.raises(SpecError) as err:
        parse_spec(GOOD, version=version)
    assert "spec_version" in err.value.errors


def test_specs_import_no_torch():
    import subprocess
    import sys

    code = "import sys, sparsity_core.specs, sparsity_core.catalog; print(sorted({'torch', 'transformers', 'db'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("spec, field, words", [
    ({**GOOD, "sparsities": [i / 100 for i in range(33)]}, "sparsities", "at most 32"),
    ({**GOOD, "eval_samples": 10**30}, "eval_samples", "less than or equal"),
    ({"kind": "kernel", "shapes": [[8, 8]] * 65}, "shapes", "at most 64"),
    ({"kind": "kernel", "tokens": list(range(1, 34))}, "tokens", "at most 32"),
    # 40 shapes x 10 token counts x 2 sparsities x 2 layouts x 1 mode = 1600 points: fits; x 3 layouts: 2400
    ({"kind": "kernel", "shapes": [[8, 8 + i] for i in range(40)], "tokens": list(range(1, 11)),
      "layouts": ["dense", "csr", "coo"]}, "shapes", "= 2400 points; at most 2000"),
    ({"kind": "explain", "lambda": float("inf")}, "lambda", "less than or equal to 1000000"),
    ({**GOOD, "model": "hf:" + "a" * 400}, "model", "cannot be read here"),
    ({**GOOD, "model": "hf:~no-such-user/x"}, "model", "cannot be read here"),
    ({**GOOD, "model": "hf:" + "a" * 600}, "model", "at most 500 characters"),
    ({**GOOD, "kind": ["prune"]}, "kind", "unknown kind"),
])
def test_every_input_is_bounded(spec, field, words):
    with pytest.raises(SpecError) as err:
        parse_spec(spec)
    assert words in err.value.errors[field]


def test_a_sweep_at_the_point_cap_is_accepted():
    # 25 shapes x 20 token counts x 2 sparsities (the default) x 2 layouts x 1 mode
    spec = parse_spec({"kind": "kernel", "shapes": [[8, 8 + i] for i in range(25)], "tokens": list(range(1, 21)),
                       "layouts": ["dense", "csr"]})
    assert spec.points == 2000


@pytest.mark.parametrize("text", ["x" * (64 * 1024 + 1), {**GOOD, "name": None, "notes_pad": "x" * 70_000}])
def test_a_spec_over_64_kb_is_refused_before_it_is_read(text):
    with pytest.raises(SpecError, match="KB of JSON; a spec is at most 64 KB"):
        parse_spec(text)


def test_a_spec_that_is_no_json_is_one_line():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    for bad in ({**GOOD, "params": {"x": {1, 2}}}, {**GOOD, "params": {"x": deep}}):
        with pytest.raises(SpecError, match="a spec is plain JSON"):
            parse_spec(bad)


def test_a_version_1_spec_with_params_not_an_object_is_a_spec_error():
    for params in ("x", True, [1]):
        with pytest.raises(SpecError) as err:
            parse_spec({"kind": "prune", "model": "digits-mlp", "method": "wanda", "params": params}, version=1)
        assert "params must be an object" in err.value.errors["params"]
