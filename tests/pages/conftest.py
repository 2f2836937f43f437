"""Page-test helpers: where a message shows in the element tree of an AppTest."""

from __future__ import annotations

from typing import Optional

import pytest


def find(node, key: str):
    """(siblings, index) of the widget with `key` in the element tree, or None when it is not drawn."""
    children = list(getattr(node, "children", {}).values())
    for i, child in enumerate(children):
        if getattr(child, "key", None) == key:
            return children, i
        found = find(child, key)
        if found:
            return found
    return None


def messages_below(at, key: str, stop: Optional[set[str]] = None) -> Optional[list[str]]:
    """The error messages drawn right after widget `key`, in its block, up to the next widget
    (or, with `stop`, the next widget whose key is in `stop`); None when `key` is not drawn."""
    found = find(at._tree, key)
    if found is None:
        return None
    siblings, i = found
    found = []
    for sibling in siblings[i + 1:]:
        sibling_key = getattr(sibling, "key", None)
        if sibling_key is not None and (stop is None or sibling_key in stop):
            break
        if type(sibling).__name__ == "Error":
            found.append(sibling.value)
    return found


@pytest.fixture
def below():
    return messages_below
