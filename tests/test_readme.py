"""The README's library example runs as written, and its commands match .ci/run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sympy

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(capsys) -> None:  # type: ignore[no-untyped-def]
    readme = (ROOT / "README.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", readme, re.S)[:1]
    exec(compile(example, "README.md", "exec"), {})  # noqa: S102 - our own README
    kan_count, siren_count = map(int, capsys.readouterr().out.split())
    assert kan_count == 2 * 5 * (5 + 3 + 2) + 5 + 5 * 1 * (5 + 3 + 2) + 1  # KAN [2, 5, 1] by hand
    assert abs(siren_count - 3000) <= 60


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    test_cmd = next(line for line in readme.splitlines() if "&& .venv/bin/pytest" in line)
    assert test_cmd in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_readme_symbolic_example_recovers_the_formula(capsys) -> None:  # type: ignore[no-untyped-def]
    readme = (ROOT / "README.md").read_text()
    example = re.findall(r"```python\n(.*?)```", readme, re.S)[1]
    exec(compile(example, "README.md", "exec"), {})  # noqa: S102 - our own README
    text, rmse = capsys.readouterr().out.rsplit(" ", 1)
    x_1, x_2 = sympy.symbols("x_1 x_2")
    target = sympy.exp(x_2**2 + sympy.sin(sympy.Float(3.1416) * x_1))
    assert sympy.simplify(sympy.sympify(text) - target) == 0
    assert float(rmse) < 1e-10
