"""Shared pytest fixtures (session-scoped, cached where building is slow)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.checkpoints import CheckpointRecipe, oracle_checkpoints, ultralytics_version

# Oracle checkpoints the converter tests use; built together in one subprocess on first use.
CONVERTER_RECIPES = [
    CheckpointRecipe(),  # n, nc 1, reg_max 16, fp16, 'model' slot (the released layout)
    CheckpointRecipe(dtype="fp32"),
    CheckpointRecipe(slot="ema"),
    CheckpointRecipe(dtype="fp32", slot="ema", reg_max=26),
    CheckpointRecipe(reg_max=26),
    CheckpointRecipe(num_classes=80),
    CheckpointRecipe(legacy_pickle=True),
    CheckpointRecipe(task="detect"),
    CheckpointRecipe(scale="s"),
    CheckpointRecipe(scale="s", reg_max=26),
]


@pytest.fixture(scope="session")
def oracle_checkpoint() -> Callable[..., Path]:
    """Factory: `oracle_checkpoint(scale="s", reg_max=26, ...)` -> path of a cached ultralytics
    checkpoint (fields of `CheckpointRecipe`). Skips when the oracle extra is not installed."""
    if ultralytics_version() is None:
        pytest.skip("ultralytics oracle not installed: pip install -e '.[oracle]'")
    oracle_checkpoints(CONVERTER_RECIPES)

    def get(**fields: object) -> Path:
        return oracle_checkpoints([CheckpointRecipe(**fields)])[0]  # type: ignore[arg-type]

    return get


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module of tiny-tensor training tests: intra-op threads cost more
    than they save there, and thrash a shared CPU (measured 0.75 s vs 12-35 s per training step
    with 2 threads on a loaded 2-core machine). Use with `pytest.mark.usefixtures("one_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
