"""Shared fixtures: small covariances used across the unit tests."""

from __future__ import annotations

import pytest
import torch

from tts_lib import tasks

torch.set_num_threads(1)  # reproducible timings and results on the 2-core machines


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``gpu`` where there is no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def skewed_cov() -> torch.Tensor:
    """d = 4, λ_i ∝ 1/i, trace 4, rotated (non-diagonal)."""
    return tasks.power_law_cov(4, 1.0, trace=4.0, rotation=tasks.random_rotation(4, seed=3))


@pytest.fixture
def iso_cov() -> torch.Tensor:
    return tasks.isotropic_cov(4)
