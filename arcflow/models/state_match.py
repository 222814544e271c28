"""Whether a set of saved tensors fits a model's: the one comparison behind every load of trainable
tensors (the student's own loader, export, resume, the tiny world's stages), each of which words
its own error."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch


def listing(names: list[str], limit: int = 8) -> str:
    """``a, b, c ... (+N more)``: a long list of names kept to one readable line."""
    more = f" ... (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


@dataclass(frozen=True)
class StateMatch:
    """How ``saved`` tensors differ from the ``expected`` ones, by name and shape."""

    missing: list[str]  # expected, not saved
    unexpected: list[str]  # saved, not expected
    mismatched: list[str]  # "name: saved (a, b) vs expected (c, d)"

    def problems(self, *, missing: bool = True, unexpected: bool = True) -> list[str]:
        """One phrase per kind of difference; shapes always count, missing and unexpected names
        when asked."""
        found = []
        if missing and self.missing:
            found.append(f"missing: {listing(self.missing)}")
        if unexpected and self.unexpected:
            found.append(f"unexpected: {listing(self.unexpected)}")
        if self.mismatched:
            found.append(f"shape mismatch: {listing(self.mismatched)}")
        return found


def match_state(
    expected: Mapping[str, torch.Tensor],
    saved: Mapping[str, torch.Tensor],
    saved_name: str = "saved",
    expected_name: str = "expected",
) -> StateMatch:
    """Compare names and shapes (meta-device and sharded tensors report their full shape)."""
    return StateMatch(
        missing=sorted(set(expected) - set(saved)),
        unexpected=sorted(set(saved) - set(expected)),
        mismatched=[
            f"{name}: {saved_name} {tuple(saved[name].shape)} vs {expected_name} "
            f"{tuple(tensor.shape)}"
            for name, tensor in expected.items()
            if name in saved and tuple(saved[name].shape) != tuple(tensor.shape)
        ],
    )
