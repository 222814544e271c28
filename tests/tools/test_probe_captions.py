"""tools/probe_captions.py --renoise on the shipped tiny FLUX stack: files, table, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
SHIPPED = ["--model", str(CHECKPOINTS / "tiny-flux")]


def test_renoise_writes_its_table(probe_tool, tmp_path, capsys):
    out = tmp_path / "renoise"
    argv = ["--arch", "flux", "--renoise", "--scenes", "4", "--sigmas", "0.9,0.4", *SHIPPED]
    argv += ["--evaluator", str(CHECKPOINTS / "tiny-evaluator")]
    probe_tool.main([*argv, "--steps", "6", "--out", str(out)])
    results = json.loads((out / "renoise.json").read_text())
    assert list(results) == ["0.9", "0.4"]
    for row in results.values():
        assert set(row) == {"true", "color", "shape", "size", "position"}
        assert 0.0 <= row["true"]["match"] <= 1.0
        assert all(0.0 <= row["color"][side] <= 1.0 for side in ("caption", "image"))
    table = (out / "renoise.md").read_text().splitlines()
    assert len(table) == 4 and table[2].startswith("| 0.9 |")
    assert "renoise.md" in capsys.readouterr().out


def test_renoise_names_a_missing_evaluator(probe_tool, tmp_path, capsys):
    missing = tmp_path / "no-evaluator"
    argv = ["--renoise", *SHIPPED, "--evaluator", str(missing), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit):
        probe_tool.main(argv)
    assert f"{missing}/config.json not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        probe_tool.main([*SHIPPED, "--renoise", "--steps", "0", "--out", str(tmp_path / "o")])
    assert "--steps must be >= 1" in capsys.readouterr().err
