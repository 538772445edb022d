"""The comparison notebook executes on a stub-scorer grid (no training) and shows intervals, the
findings table and plots with error bars."""

import io
import pathlib

import nbclient
import nbformat
import pandas as pd

from experiments import results
from tests import fake_grid

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "zero_shot_vs_mtf.ipynb"


def test_notebook_shows_intervals_findings_and_error_bars(tmp_path, monkeypatch):
  root = fake_grid.build(tmp_path)
  monkeypatch.setenv("GRID_DIR", str(root))
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nb.cells.append(nbformat.v4.new_code_cell(
      "print(intervals.to_json(orient='split'))\nprint(found.to_json(orient='split'))"))
  nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": str(REPO_ROOT)}}).execute()
  text = nb.cells[-1].outputs[0]["text"].splitlines()
  intervals = pd.read_json(io.StringIO(text[0]), orient="split")
  found = pd.read_json(io.StringIO(text[1]), orient="split")
  assert (intervals["lo"] <= intervals["score"]).all()
  assert (intervals["score"] <= intervals["hi"]).all()
  assert intervals["majority_baseline"].notna().all()
  assert "constant answer" in " ".join(intervals["flagged"].fillna(""))
  assert {"CD:FLM vs ND:PLM", "ED:MLM vs CD:FLM"} <= set(found["comparison"])
  assert found["p_holm"].notna().all() and set(found["agrees"]) <= {"yes", "no", "tie"}
  # The figures were drawn (the zero-shot vs post-MTF one and the per-task one per suite).
  images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]
  assert len(images) >= 2
  df = results.read_csv(str(root))
  assert len(intervals) == len(df.groupby(["cell", "phase", "suite"]))
