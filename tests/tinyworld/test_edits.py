"""The tiny world's edit pairs: each instruction form changes exactly what it says, only inside
the cells it names, and the pairs are reproducible and written in the documented format."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from arcflow.tinyworld.edits import EDIT_FORMS, position_phrase, sample_edit, write_edit_pairs
from arcflow.tinyworld.scenes import (
    _TRAIN_COMBOS,
    COLORS,
    HELDOUT_COMBOS,
    POSITIONS,
    SHAPES,
    SIZES,
    render,
)

WORD = {
    "colour": "|".join(COLORS),
    "shape": "|".join(SHAPES),
    "size": "|".join(SIZES),
    "position": "|".join(sorted(POSITIONS, key=len, reverse=True)),
    "phrase": "|".join(position_phrase(p) for p in POSITIONS),
}
GRAMMAR = {
    "color": r"make the (?P<shape>{shape}) (?P<colour>{colour})",
    "move": r"move the (?P<shape>{shape}) to the (?P<position>{position})",
    "size": r"make the (?P<shape>{shape}) (?P<size>{size})",
    "shape": r"turn the (?P<shape>{shape}) into a (?P<new>{shape})",
    "remove": r"remove the (?P<shape>{shape})",
    "add": r"add a (?P<size>{size}) (?P<colour>{colour}) (?P<new>{shape}) (?P<phrase>{phrase})",
}


def by_cell(scene):
    return {o.position: o for o in scene.objects}


@pytest.mark.parametrize("form", EDIT_FORMS)
def test_each_form_changes_what_it_says_and_nothing_else(form):
    for index in range(25):
        pair = sample_edit("train", 0, index, form)
        match = re.fullmatch(GRAMMAR[form].format(**WORD), pair.instruction)
        assert match, pair.instruction
        source, target = by_cell(pair.source), by_cell(pair.target)
        # Pixels: identical outside the edited cells, changed inside them.
        before, after = render(pair.source), render(pair.target)
        keep = pair.preserved_mask()
        assert np.array_equal(before[keep], after[keep])
        assert not np.array_equal(before[~keep], after[~keep])
        untouched = set(source) - set(pair.edited)
        assert all(source[p] == target[p] for p in untouched)
        if form == "add":
            (cell,) = pair.edited
            new = target[cell]
            assert cell not in source and len(target) == 2
            assert (new.size, new.color, new.shape) == match.group("size", "colour", "new")
            assert match.group("phrase") == position_phrase(cell)
            continue
        old = next(o for o in pair.source.objects if o.shape == match.group("shape"))
        assert sum(o.shape == old.shape for o in pair.source.objects) == 1  # named uniquely
        if form == "remove":
            assert old.position not in target and len(target) == len(source) - 1
            continue
        if form == "move":
            new = target[match.group("position")]
            assert old.position not in target and new.position != old.position
        else:
            new = target[old.position]
        changed = {
            k for k in ("color", "shape", "size", "position") if getattr(old, k) != getattr(new, k)
        }
        expected = {"color": {"color"}, "move": {"position"}, "size": {"size"}, "shape": {"shape"}}
        assert changed == expected[form]
        said = {"color": "colour", "size": "size", "shape": "new"}.get(form)
        if said:
            assert getattr(new, form) == match.group(said)
        assert (new.offset, new.scale, new.shade) == (old.offset, old.scale, old.shade)


def test_pairs_are_reproducible_and_split():
    assert sample_edit("train", 3, 7) == sample_edit("train", 3, 7)
    assert sample_edit("train", 3, 7) != sample_edit("train", 4, 7)
    forms = {sample_edit("train", 0, i).form for i in range(60)}
    assert forms == set(EDIT_FORMS)
    train = set(_TRAIN_COMBOS)
    for i in range(40):
        assert all(o.combo in train for o in sample_edit("train", 0, i).target.objects)
        heldout = sample_edit("heldout", 0, i)
        assert any(o.combo in HELDOUT_COMBOS for o in heldout.source.objects)
    with pytest.raises(ValueError, match="unknown edit form 'recolor'"):
        sample_edit("train", 0, 0, "recolor")


def test_written_pairs_are_images_and_a_jsonl(tmp_path):
    path = write_edit_pairs(tmp_path, 5, split="heldout", seed=2)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 5 and set(lines[0]) == {"image", "instruction"}
    for index, line in enumerate(lines):
        pair = sample_edit("heldout", 2, index)
        assert line["instruction"] == pair.instruction
        with Image.open(tmp_path / line["image"]) as image:
            assert np.array_equal(np.asarray(image), render(pair.source))
