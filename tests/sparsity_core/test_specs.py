import pytest

from sparsity_core.specs import SCHEMA_VERSION, PruneSpec, SpecError, parse_spec

GOOD = {"kind": "prune", "model": "digits-mlp", "method": "magnitude", "scope": "global",
        "sparsities": [0.9, 0, 0.5], "seed": 0}


def test_valid_spec_sorts_sparsities_and_keeps_fields():
    spec = parse_spec(GOOD)
    assert isinstance(spec, PruneSpec)
    assert spec.sparsities == [0.0, 0.5, 0.9]
    assert spec.scope == "global" and spec.method_name == "magnitude"
    assert SCHEMA_VERSION == 1


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
