"""The ``tiny`` fixture of this folder: toy FLUX / Qwen-Image bases and students, their
conditioning and latents (``tiny_models.TinyWorld``)."""

from __future__ import annotations

import pytest
from tiny_models import TinyWorld


@pytest.fixture
def tiny() -> TinyWorld:
    return TinyWorld()
