"""The result of one analysis: InferenceData, derived quantities, labelled tables and a manifest.

The command line and Python scripts use the same object: :func:`hlh_meta.run_analysis`
makes one, :meth:`AnalysisResult.save` writes ``results/<analysis>/`` and
:meth:`AnalysisResult.load` reads it back (for ``hlh-meta report``); the derived
quantities of a loaded result are computed again from its InferenceData, so they are the
same numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import arviz as az
import pandas as pd

from .analyses import AnalysisType, Quantity, analysis_for
from .inference import Diagnostics
from .models.posterior import diagnostics_of
from .report.figures import figures_for, save_figures
from .report.html import headline_html, write_report
from .report.tables import write_xlsx
from .report.writer import atomic_dir


@dataclass
class AnalysisResult:
    name: str
    kind: str
    title: str
    idata: az.InferenceData
    tables: dict[str, pd.DataFrame]
    quantities: list[Quantity] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)

    @property
    def analysis(self) -> AnalysisType:
        return analysis_for(self.kind)

    @property
    def diagnostics(self) -> Diagnostics:
        return diagnostics_of(self.idata)

    def table(self, name: str) -> pd.DataFrame:
        """One of the result's tables (``summary``, ``derived``, ``data_used``, ``excluded``, ...)."""
        if name not in self.tables:
            raise KeyError(f"no table '{name}'; this result has {', '.join(self.tables)}")
        return self.tables[name]

    def forest(self) -> dict:
        """The rows and summary rows of the forest plot, as the analysis type builds them."""
        return self.analysis.forest(self.tables, self.quantities)

    def figures(self) -> dict:
        """Matplotlib figures of this result, by file stem."""
        return figures_for(self)

    def __repr__(self) -> str:
        diag = "diagnostics passed" if self.diagnostics.passed else "DIAGNOSTICS FLAGGED"
        rows = len(self.tables["data_used"]) if "data_used" in self.tables else 0
        return (f"<AnalysisResult {self.name!r} ({self.kind}): {rows} rows in the model, {len(self.quantities)} "
                f"derived quantities, tables {', '.join(self.tables)}; {diag}>")

    def _repr_html_(self) -> str:
        """Jupyter: the headline findings, the summary of findings and the forest plot."""
        return headline_html(self)

    def save(self, folder: str | Path, force: bool = False, figures: bool = True, report: bool = True) -> Path:
        """Write the results folder atomically (nothing is left half-written)."""
        folder = Path(folder)
        indexed = self.analysis.indexed_tables
        with atomic_dir(folder, force=force) as tmp:
            self.idata.to_netcdf(tmp / "posterior.nc")
            for name, frame in self.tables.items():
                frame.to_csv(tmp / f"{name}.csv", index=name in indexed)
            write_xlsx(self, tmp / "tables.xlsx")
            if figures:
                save_figures(self, tmp / "figures")
            (tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=2, default=str) + "\n", encoding="utf-8")
            if report:
                write_report(self, tmp / "report.html", figure_dir=tmp / "figures" if figures else None)
        return folder

    def rebuild_report(self, folder: str | Path) -> Path:
        """Write ``report.html`` of a saved results folder again (atomically replaced)."""
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
        analysis = analysis_for(manifest["kind"])
        tables = {name: pd.read_csv(folder / f"{name}.csv", index_col=0 if name in analysis.indexed_tables else None)
                  for name in manifest["tables"]}
        idata = az.from_netcdf(folder / "posterior.nc")
        return cls(manifest["analysis"], manifest["kind"], manifest["title"], idata, tables,
                   analysis.supported_quantities(idata), manifest)
