"""tools/count_params.py on the released student configs (meta device: no memory)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def count_params_main():
    spec = importlib.util.spec_from_file_location(
        "count_params", ROOT / "tools" / "count_params.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize(
    "config, trainable, base, percent",
    [
        # docs/method.md, The student (Trainable tensors): about 0.65 B of 11.9 B (5.5%) and
        # 0.96 B of 20.4 B (4.7%).
        ("flux_student.py", 0.65, 11.90, "5.5 %"),
        ("qwen_student.py", 0.96, 20.43, "4.7 %"),
    ],
)
def test_released_fractions(config, trainable, base, percent, capsys):
    count_params_main()([str(ROOT / "configs" / "_base_" / "models" / config)])
    out = capsys.readouterr().out
    assert f"({trainable:.2f} B)" in out
    assert f"({base:.2f} B, frozen teacher)" in out
    assert re.search(rf"trainable / base: +{re.escape(percent)}", out)


def test_student_nested_in_model(tmp_path, capsys):
    config = tmp_path / "distill.py"
    config.write_text(
        "student = dict(arch='qwen_image', transformer=dict(from_config='full'), lora_rank=0)\n"
        "model = dict(type='ArcFlowDistiller', student=student)\n"
    )
    count_params_main()([str(config)])
    assert "LoRA rank 0" in capsys.readouterr().out
