"""examples/quickstart.ipynb: committed without outputs, mirrored by the README, and (slow) run end to
end in a real kernel with the backend a notebook gets (inline), each figure shown once."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


def _code(nb: nbformat.NotebookNode) -> list[str]:
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def test_the_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


def test_the_readme_from_python_section_is_the_notebooks_code() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## From Python", 1)[1].split("\n## ", 1)[0]
    (example,) = re.findall(r"```python\n(.*?)```", section, re.S)
    cells = _code(nbformat.read(NOTEBOOK, as_version=4))
    lines = {line.strip() for cell in cells for line in cell.splitlines()}
    missing = [line for line in example.splitlines() if line.strip() and line.strip() not in lines]
    assert not missing, f"README lines not in {NOTEBOOK.name}: {missing}"
    assert "examples/quickstart.ipynb" in section


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a couple of minutes on 2 idle cores; far longer on a loaded machine
def test_the_quickstart_notebook_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel picks its own (inline), as in Jupyter
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Raises CellExecutionError at the first cell that fails; the kernel works in tmp_path (runs/ goes there).
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    shown = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
            shown[cell.source.splitlines()[-1]] = len(images)
    plots = {line: n for line, n in shown.items() if line.startswith("plot.")}
    assert len(plots) == 6 and set(plots.values()) == {1}, plots  # each figure drawn once, inline
    assert all(n == 0 for line, n in shown.items() if line not in plots)
    text = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "exp(x_2**2 + sin(3.1416*x_1))" in text  # the symbolic workflow found the formula
    assert (tmp_path / "runs" / "smoke" / "report.html").is_file()
    assert re.search(r"KAN \(PyKAN tricks\) \(kan:1-\d+-1.*\): test MSE \d", text)
