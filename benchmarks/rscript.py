"""Run an R script on a DataFrame written to CSV, for the benchmarks' same-run peer timings."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd


def run_r_on_csv(script: str, data: pd.DataFrame, peer: str, timeout: float | None = None) -> list[float] | None:
    """The numbers the script prints (``{path}`` in it is replaced by the CSV's path), or None
    where Rscript is missing, the script fails or runs past `timeout` seconds (saying why)."""
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.csv"
        data.to_csv(path, index=False)
        script_path = Path(tmp) / "run.R"
        script_path.write_text(script.replace("{path}", str(path)))
        try:
            out = subprocess.run(["Rscript", str(script_path)], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"  ({peer} not timed: not finished after {timeout:.0f} s, stopped)")
            return None
    if out.returncode != 0:
        print(f"  ({peer} not timed: {out.stderr.strip()[:200]})")
        return None
    return [float(v) for v in out.stdout.split()]
