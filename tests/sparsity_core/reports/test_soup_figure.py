"""The soup figure: ingredients as dots, their mean and best, the soup as the line; one run only."""

import pandas as pd

from sparsity_core.reports.pruning import soup_figure, soup_key


def test_soup_figure_draws_ingredients_their_mean_best_and_the_soup():
    rows = [(1, "accuracy", "ingredient 0", 0.8, 0.70), (1, "accuracy", "ingredient 1", 0.8, 0.74),
            (1, "accuracy", "ingredient mean", 0.8, 0.72), (1, "accuracy", "ingredient best", 0.8, 0.74),
            (1, "accuracy", "", 0.8, 0.75), (1, "accuracy", "", 0.0, 0.78),  # x = 0: no soup there
            (1, "sparsity", "", 0.8, 0.8), (2, "accuracy", "ingredient 0", 0.8, 0.1)]
    frame = pd.DataFrame(rows, columns=["run_id", "key", "series", "x", "value"])
    assert soup_key(frame, 1) == "accuracy" and soup_key(frame[frame["run_id"] == 3], 3) is None
    fig = soup_figure(frame, 1)
    by_name = {t.name: t for t in fig.data}
    assert list(by_name) == ["ingredients", "ingredients' mean", "ingredients' best", "soup (their average)"]
    assert list(by_name["ingredients"].y) == [0.70, 0.74]  # run 2's ingredient is not drawn
    assert list(by_name["ingredients' mean"].y) == [0.72] and list(by_name["ingredients' best"].y) == [0.74]
    assert list(by_name["soup (their average)"].x) == [0.8] and list(by_name["soup (their average)"].y) == [0.75]


def test_a_run_without_a_soup_gets_a_figure_that_says_so():
    frame = pd.DataFrame([(1, "accuracy", "", 0.5, 0.9)], columns=["run_id", "key", "series", "x", "value"])
    fig = soup_figure(frame, 1)
    assert not fig.data and "no soup" in fig.layout.annotations[0].text
