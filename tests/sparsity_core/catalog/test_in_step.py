"""The catalog names what the compute modules implement: the two never drift apart."""

from collections import Counter

import pytest

from sparsity_core import catalog


def test_every_catalog_model_has_a_loader_and_nothing_else_does():
    from sparsity_core.zoo import LOADERS

    assert set(LOADERS) == set(catalog.MODELS)


@pytest.mark.parametrize("name", list(catalog.MODELS))
def test_model_metadata_matches_the_real_skeleton(name):
    """What the app checks shapes against is what the model really has (read on the meta device)."""
    from sparsity_core.pruning.base import weight_2d
    from sparsity_core.zoo import blocks, load_skeleton, prunable_linears

    entry, handle = catalog.MODELS[name], load_skeleton(name)
    shapes = Counter(tuple(weight_2d(m).shape) for m in prunable_linears(handle).values())
    assert sorted((o, i, n) for (o, i), n in shapes.items()) == sorted(entry.linears)
    assert (handle.task, handle.family, len(blocks(handle))) == (entry.task, entry.family, entry.blocks)
    assert handle.num_params() == entry.params
    assert handle.classes == entry.classes
    assert (handle.tokenizer is not None) == entry.tokenizer
    if entry.blocks:
        assert handle.model.config.hidden_size == entry.hidden


def test_pruning_methods_are_the_catalogs():
    from sparsity_core.pruning import ACTIVATION_METHODS, METHODS

    # weight methods are PruningMethods; activation-sparsity ones (WINA, TEAL) have their own registry
    assert set(METHODS) == {n for n, e in catalog.METHODS.items() if not e.activation}
    assert set(ACTIVATION_METHODS) == {n for n, e in catalog.METHODS.items() if e.activation}


def test_sae_variants_are_the_catalogs():
    from sparsity_core.sae import VARIANTS

    assert set(VARIANTS) == set(catalog.VARIANTS)


def test_sae_hidden_layers_are_the_models():
    from torch import nn

    from sparsity_core.catalog.sae import HIDDEN_LAYERS, IMAGE_DATA, SITES, TEXT_SITES
    from sparsity_core.specs import SAESpec
    from sparsity_core.zoo import load_skeleton

    assert set(HIDDEN_LAYERS) == set(IMAGE_DATA)
    assert set(SITES) == {*TEXT_SITES, "hidden"} == set(SAESpec.model_fields["site"].annotation.__args__)
    for name, widths in HIDDEN_LAYERS.items():
        body = load_skeleton(name).model.body
        linears = [m for m in body if isinstance(m, nn.Linear)]
        assert tuple(m.out_features for m in linears) == widths
        assert sum(isinstance(m, nn.ReLU) for m in body) == len(widths)


def test_kernel_layouts_are_the_catalogs():
    from sparsity_core.kernels.layouts import LAYOUTS

    assert set(LAYOUTS) == set(catalog.LAYOUT_HELP)


def test_datasets_are_the_catalogs():
    from sparsity_core.data.datasets import DATASETS, load_dataset

    assert set(DATASETS) == set(catalog.DATASETS)
    for name, entry in catalog.DATASETS.items():
        data = load_dataset(name, "test")
        assert data.classes == entry.classes
        assert (data.images is not None) == (entry.modality == "image")


def test_every_preset_is_a_valid_spec():
    from sparsity_core.specs import parse_spec

    specs = [spec for items in catalog.PRESETS.values() for preset in items for spec in preset.specs]
    assert specs
    for spec in specs:
        parse_spec(spec)
