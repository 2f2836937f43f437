"""The explanations lab's tests run torch on one thread: their tensors are tiny, and on a shared,
oversubscribed CPU OpenMP barriers stall small ops (log_softmax on 12x3 measured 10 ms vs 3 us)."""

import pytest


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
