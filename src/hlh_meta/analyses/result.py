"""The result of one analysis: InferenceData, labelled tables and a manifest.

The command line and Python scripts use the same object: ``run_analysis`` makes one,
``AnalysisResult.save`` writes ``results/<analysis>/`` and ``AnalysisResult.load`` reads
it back (for ``hlh-meta report``).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import arviz as az
import pandas as pd

from ..data import Dataset, load_dataset
from ..inference import Diagnostics
from ..models.posterior import diagnostics_of
from ..report.writer import INDEXED_TABLES, atomic_dir
from ..spec import Spec, load_spec

PACKAGES = ("hlh-meta", "pymc", "pytensor", "nutpie", "arviz", "numpy", "scipy", "pandas", "xarray", "pandera")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


@dataclass
class AnalysisResult:
    name: str
    kind: str
    title: str
    idata: az.InferenceData
    tables: dict[str, pd.DataFrame]
    manifest: dict = field(default_factory=dict)

    @property
    def diagnostics(self) -> Diagnostics:
        return diagnostics_of(self.idata)

    def table(self, name: str) -> pd.DataFrame:
        """One of ``summary``, ``derived``, ``data_used``, ``excluded``, ``comparison``."""
        if name not in self.tables:
            raise KeyError(f"no table '{name}'; this result has {', '.join(self.tables)}")
        return self.tables[name]

    def figures(self) -> dict:
        """Matplotlib figures of this result, by file stem."""
        from ..report.figures import figures_for

        return figures_for(self)

    def save(self, folder: str | Path, force: bool = False, figures: bool = True, report: bool = True) -> Path:
        """Write the results folder atomically (nothing is left half-written)."""
        folder = Path(folder)
        with atomic_dir(folder, force=force) as tmp:
            self.idata.to_netcdf(tmp / "posterior.nc")
            for name, frame in self.tables.items():
                frame.to_csv(tmp / f"{name}.csv", index=name in INDEXED_TABLES)
            if figures:
                from ..report.figures import save_figures

                save_figures(self, tmp / "figures")
            (tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=2, default=str) + "\n", encoding="utf-8")
            if report:
                from ..report.html import write_report

                write_report(self, tmp / "report.html", figure_dir=tmp / "figures" if figures else None)
        return folder

    def rebuild_report(self, folder: str | Path) -> Path:
        """Write ``report.html`` of a saved results folder again (atomically replaced)."""
        from ..report.html import write_report

        folder = Path(folder)
        tmp = folder / ".report.html.partial"
        write_report(self, tmp, figure_dir=folder / "figures")
        tmp.replace(folder / "report.html")
        return folder / "report.html"

    @classmethod
    def load(cls, folder: str | Path) -> "AnalysisResult":
        folder = Path(folder)
        manifest_path = folder / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{folder} is not a results folder (no manifest.json)")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        tables = {}
        for name in manifest["tables"]:
            tables[name] = pd.read_csv(folder / f"{name}.csv", index_col=0 if name in INDEXED_TABLES else None)
        idata = az.from_netcdf(folder / "posterior.nc")
        return cls(manifest["analysis"], manifest["kind"], manifest["title"], idata, tables, manifest)


def run_analysis(spec: Spec | str | Path, ds: Dataset | None = None, progress: bool = False) -> AnalysisResult:
    """Run the analysis a spec describes on ``ds`` (default: the bundled data)."""
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    ds = load_dataset() if ds is None else ds
    started = time.perf_counter()
    if spec.kind == "mortality":
        from .mortality import mortality_tables

        idata, tables = mortality_tables(ds, spec, progress=progress)
    else:
        from .biomarkers import biomarker_tables

        idata, tables = biomarker_tables(ds, spec, progress=progress)
    elapsed = time.perf_counter() - started
    manifest = {
        "analysis": spec.name,
        "kind": spec.kind,
        "title": spec.title,
        "spec_file": str(spec.path),
        "spec": spec.raw,
        "seed": spec.get("sampling", "seed"),
        "data_dir": str(ds.path),
        "data_sha256": ds.sha256,
        "versions": versions(),
        "timings_s": {"total": round(elapsed, 3)},
        "diagnostics": json.loads(diagnostics_of(idata).to_json()),
        "tables": list(tables),
    }
    return AnalysisResult(spec.name, spec.kind, spec.title, idata, tables, manifest)
