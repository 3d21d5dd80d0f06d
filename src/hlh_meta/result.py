"""The result of one analysis: InferenceData, derived quantities, labelled tables and a manifest.

The command line and Python scripts use the same object: :func:`hlh_meta.run_analysis`
makes one, :meth:`AnalysisResult.save` writes ``results/<analysis>/`` and
:meth:`AnalysisResult.load` reads it back (for ``hlh-meta report``); the derived
quantities of a loaded result are computed again from its InferenceData, so they are the
same numbers.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import arviz as az
import pandas as pd

from .analyses import AnalysisType, Quantity, analysis_for
from .analyses.frames import frames_kept
from .data import Dataset
from .errors import OutputLocationError, ResultsDamagedError, ResultsExistError
from .inference import Diagnostics
from .models.posterior import diagnostics_of
from .report.figures import figure_specs, figures_for, save_figures
from .report.html import headline_html, write_report
from .report.tables import write_xlsx
from .report.writer import atomic_dir


@dataclass
class AnalysisResult:
    """The result of one analysis: its posterior, derived quantities, tables and manifest.

    Made by :func:`hlh_meta.run_analysis`; written to a results folder by :meth:`save` and
    read back by :meth:`load`.

    Parameters
    ----------
    name : str
        The analysis's name (the spec's ``[analysis] name``).
    kind : str
        The analysis type (the spec's ``[analysis] kind``, e.g. ``"mortality"``).
    title : str
        The analysis's title, as reports show it.
    idata : arviz.InferenceData
        The posterior (and the groups the engine adds); its ``posterior.attrs`` hold the
        diagnostics, priors and sampler settings.
    tables : dict of str to pandas.DataFrame
        The labelled tables by name (``summary``, ``derived``, ``data_used``, ``excluded``,
        and with a sensitivity analysis ``sensitivity`` and ``robustness``, ...).
    quantities : list of Quantity, optional
        The derived quantities with their posterior (and prior) draws.
    manifest : dict, optional
        What the result was made from: spec, data digests, seed, library versions,
        timings, diagnostics and the table names; :meth:`save` adds the SHA-256 of the
        files it writes.
    """

    name: str
    kind: str
    title: str
    idata: az.InferenceData
    tables: dict[str, pd.DataFrame]
    quantities: list[Quantity] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)

    @property
    def analysis(self) -> AnalysisType:
        """The registered analysis type of this result's ``kind``."""
        return analysis_for(self.kind)

    @property
    def diagnostics(self) -> Diagnostics:
        """The diagnostics gate's verdict on the fit (R-hat, bulk and tail ESS, divergences)."""
        return diagnostics_of(self.idata)

    def predict(self, profiles: pd.DataFrame, data: "str | Path | None" = None) -> pd.DataFrame:
        """Mortality of new covariate profiles from this result's draws, with no refit.

        Each profile goes through the fitted model's own definition of a profile's
        mortality (the compiled model evaluated at the stored draws), so the numbers are
        those a fit with these profiles would have stored.

        Parameters
        ----------
        profiles : pandas.DataFrame
            A row per profile and a column per covariate of the model (``trigger``,
            ``age_group``, ``iv_fraction``), each value a level (``iv_fraction``:
            ``"intravenous"``, ``"subcutaneous"`` or a share of IV patients in [0, 1]); a
            covariate left out or empty is taken as in the included strata. The index labels
            the rows (a default index: labels built from the levels).
        data : str or pathlib.Path, optional
            The tables the result was fitted to (default: the folder its manifest names);
            they must be the same tables (SHA-256 against the manifest).

        Returns
        -------
        pandas.DataFrame
            A row per profile and quantity (typical-study and new-study mortality, %) with
            the columns of ``derived.csv``: median, 95% interval, P(<10%) ..., the studies
            and patients of known composition holding the profile's levels, and
            ``extrapolation`` (True where no stratum of known composition holds them).

        Raises
        ------
        hlh_meta.InputError
            For a profile column that is not a covariate of the model, a value that is not
            a level, tables that differ from those fitted, an analysis type without
            profiles, or a result whose draws were not kept in the sampler's coordinates.

        Examples
        --------
        >>> result = hm.run_analysis("models/mortality.toml")           # doctest: +SKIP
        >>> result.predict(pd.DataFrame({"trigger": ["malignancy"], "age_group": ["adult"],
        ...                              "iv_fraction": ["intravenous"]}))  # doctest: +SKIP
        """
        ds, spec = self._fitted_to(data)
        return self.analysis.predict(ds, spec, self.idata, profiles)

    def _fitted_to(self, data):
        """The tables (checked to be those fitted: SHA-256 against the manifest) and the spec
        of this result."""
        from .data import as_dataset
        from .errors import InputError
        from .spec import Spec

        where = data if data is not None else self.manifest.get("data_dir")
        ds = as_dataset(where)
        recorded = self.manifest.get("data_sha256")
        if recorded is not None and dict(ds.sha256) != dict(recorded):
            raise InputError(f"the tables in {ds.path} are not those this result was fitted to (their SHA-256 differ "
                             "from the manifest's); give the folder it was fitted to as data=")
        spec = Spec(Path(self.manifest.get("spec_file") or self.name), self.name, self.kind, self.title,
                    self.manifest["spec"])
        return ds, spec

    def compare(self, data: "Dataset | str | Path | None" = None, step=None) -> "AnalysisResult":
        """This result with the comparison of its spec's covariate sets added, from its own draws.

        The step ``hlh-meta compare`` runs: the result's posterior serves the set that is
        the model's covariates (nothing is sampled again for it); the other sets are fitted
        and each study left out in turn (leave-one-study-out cross-validation by
        Pareto-smoothed importance sampling, refitting where the Pareto k is above 0.5).

        Parameters
        ----------
        data : Dataset, str or pathlib.Path, optional
            The tables the result was fitted to (default: the folder its manifest names);
            they must be the same tables (SHA-256 against the manifest).
        step : callable, optional
            ``step(text)``, called as each phase starts (each set's fit, importance
            sampling, each refit).

        Returns
        -------
        AnalysisResult
            A new result with the ``comparison`` table and the manifest's ``compared``
            true; write it with :meth:`save`.

        Raises
        ------
        hlh_meta.InputError
            If the tables are not those the result was fitted to.

        Examples
        --------
        >>> result = hm.run_analysis("models/mortality.toml")       # doctest: +SKIP
        >>> result.compare().table("comparison")                     # doctest: +SKIP
        """
        import time

        ds, spec = self._fitted_to(data)
        analysis = self.analysis
        started = time.perf_counter()
        with ds.named_as_given(), frames_kept():     # a workbook's sheets named in errors; each frame built once
            spec = analysis.resolve(ds, spec)
            used, _ = analysis.frame(ds, spec)
            tables = {name: frame for name, frame in self.tables.items() if name != "comparison"}
            tables.update(analysis.comparison_step(ds, spec, used, self.idata, step=step))
        manifest = {k: v for k, v in self.manifest.items() if k != FILE_HASHES}
        manifest.update(tables=list(tables), compared=True,
                        timings_s={**manifest.get("timings_s", {}), "compare": round(time.perf_counter() - started, 3)})
        return type(self)(self.name, self.kind, self.title, self.idata, tables, self.quantities, manifest)

    def table(self, name: str) -> pd.DataFrame:
        """One of the result's tables (``summary``, ``derived``, ``data_used``, ``excluded``, ...).

        Parameters
        ----------
        name : str
            The table's name, a key of :attr:`tables`.

        Returns
        -------
        pandas.DataFrame
            The table.

        Raises
        ------
        KeyError
            If the result has no table of that name (the message lists those it has).
        """
        if name not in self.tables:
            raise KeyError(f"no table '{name}'; this result has {', '.join(self.tables)}")
        return self.tables[name]

    def forest(self) -> dict:
        """The rows and summary rows of the forest plot, as the analysis type builds them.

        Returns
        -------
        dict of str to pandas.DataFrame
            The forest plot's rows (``rows``) and its summary rows (``summaries``).
        """
        return self.analysis.forest(self.tables, self.quantities)

    def figures(self) -> dict:
        """Matplotlib figures of this result, by file stem.

        Returns
        -------
        dict of str to matplotlib.figure.Figure
            The figures the analysis type shows, by file stem; a figure with nothing to
            draw is left out.
        """
        return figures_for(self)

    def __repr__(self) -> str:
        diag = "diagnostics passed" if self.diagnostics.passed else "DIAGNOSTICS FLAGGED"
        rows = len(self.tables["data_used"]) if "data_used" in self.tables else 0
        return (f"<AnalysisResult {self.name!r} ({self.kind}): {rows} rows in the model, {len(self.quantities)} "
                f"derived quantities, tables {', '.join(self.tables)}; {diag}>")

    def _repr_html_(self) -> str:
        """Jupyter: the headline findings, the summary of findings and the forest plot."""
        return headline_html(self)

    def save(self, folder: str | Path, force: bool = False, figures: bool = True, report: bool = True, *,
             terms: str = "python", drawer=None) -> Path:
        """Write the results folder atomically (nothing is left half-written).

        The folder holds ``posterior.nc``, one CSV file per table, ``tables.xlsx``,
        ``manifest.json`` and, as asked, ``figures/`` and ``report.html``. The SHA-256 of
        the posterior and of each table is recorded in ``manifest.json``
        (``files_sha256``), so :meth:`load` refuses a folder whose files were changed since.

        Parameters
        ----------
        folder : str or pathlib.Path
            The results folder to write.
        force : bool, default False
            Replace an existing folder; without it an existing folder is refused.
        figures : bool, default True
            Write the figures (``figures/``).
        report : bool, default True
            Write the HTML report (``report.html``).
        terms : {"python", "cli"}, default "python"
            How a refusal names the way out: ``"python"`` (``force=True``, another folder)
            or ``"cli"`` (``--force``, ``--out``).
        drawer : hlh_meta.pipeline.FigureDrawer, optional
            A background process that draws some of the figures while this one writes the
            rest (what ``hlh-meta run``, ``fit`` and ``sensitivity`` use); the files are the same.

        Returns
        -------
        pathlib.Path
            The folder written.

        Raises
        ------
        hlh_meta.errors.ResultsExistError
            If the folder exists (or appeared while writing) and ``force`` is off.
        hlh_meta.errors.OutputLocationError
            If the folder cannot be written there (a file in the way, no permission).
        """
        folder = Path(folder)
        indexed = self.analysis.indexed_tables
        with _python_terms() if terms == "python" else nullcontext(), atomic_dir(folder, force=force) as tmp:
            handed = None
            if figures and drawer is not None:
                (tmp / "figures").mkdir()
                handed = drawer.hand(self, tmp / "figures")
            try:
                self.idata.to_netcdf(tmp / "posterior.nc")
                for name, frame in self.tables.items():
                    frame.to_csv(tmp / f"{name}.csv", index=name in indexed)
                write_xlsx(self, tmp / "tables.xlsx")
                if figures:                               # those not handed to the drawer
                    save_figures(self, tmp / "figures", None if handed is None else
                                 [s.name for s in figure_specs(self) if s.name not in handed[0]])
                if handed:
                    drawer.collect(handed, self, tmp / "figures")
                    handed = None
            finally:
                if handed:                                # abandoned: its process stops before the folder goes
                    drawer.abandon(handed)
            self.manifest[FILE_HASHES] = {f: _sha256(tmp / f) for f in ["posterior.nc"] +
                                          [f"{name}.csv" for name in self.tables]}
            (tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=2, default=str) + "\n", encoding="utf-8")
            if report:
                write_report(self, tmp / "report.html", figure_dir=tmp / "figures" if figures else None)
        return folder

    def rebuild_report(self, folder: str | Path) -> Path:
        """Write ``report.html`` of a saved results folder again (atomically replaced).

        Parameters
        ----------
        folder : str or pathlib.Path
            The results folder this result was saved to (its ``figures/`` are linked).

        Returns
        -------
        pathlib.Path
            The path of the report written.

        Raises
        ------
        hlh_meta.errors.OutputLocationError
            If the folder cannot be written.
        """
        folder = Path(folder)
        tmp = folder / ".report.html.partial"
        try:
            write_report(self, tmp, figure_dir=folder / "figures")
            tmp.replace(folder / "report.html")
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise OutputLocationError(f"cannot write the report in {folder}: {exc.strerror or exc} (a read-only "
                                      "folder or file system? copy the results folder somewhere writable)") from None
        return folder / "report.html"

    @classmethod
    def load(cls, folder: str | Path) -> "AnalysisResult":
        """Read a results folder written by :meth:`save`.

        The derived quantities are computed again from the posterior, so they are the same
        numbers as those of the result that was saved.

        Parameters
        ----------
        folder : str or pathlib.Path
            The results folder.

        Returns
        -------
        AnalysisResult
            The result the folder holds.

        Raises
        ------
        FileNotFoundError
            If ``folder`` is not a results folder (no such folder, a file, or no
            ``manifest.json``).
        hlh_meta.errors.ResultsDamagedError
            If its manifest, posterior or tables are missing, unreadable or changed since
            they were written (SHA-256 against the manifest); the message names what is
            damaged.
        """
        folder = Path(folder)
        manifest_path = folder / "manifest.json"
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a results folder ({'a file' if folder.exists() else 'no such folder'})")
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{folder} is not a results folder (no manifest.json)")
        manifest = _manifest(folder, manifest_path)
        analysis = analysis_for(manifest["kind"])
        for name in ["posterior.nc"] + [f"{t}.csv" for t in manifest["tables"]]:
            if not (folder / name).is_file():
                raise ResultsDamagedError(folder, f"{name} missing (the manifest lists it)")
        for name, digest in manifest.get(FILE_HASHES, {}).items():
            if (folder / name).is_file() and _sha256(folder / name) != digest:
                raise ResultsDamagedError(folder, f"{name} was changed after it was written (its SHA-256 differs from "
                                                  "the manifest's); the report is built only from the results as "
                                                  "written: fit again, or restore the file")
        tables = {}
        for name in manifest["tables"]:
            try:
                tables[name] = pd.read_csv(folder / f"{name}.csv",
                                           index_col=0 if name in analysis.indexed_tables else None)
            except (OSError, ValueError, pd.errors.ParserError) as exc:
                raise ResultsDamagedError(folder, f"{name}.csv cannot be read ({type(exc).__name__}: {exc})") from None
        try:
            idata = az.from_netcdf(folder / "posterior.nc")
            quantities = analysis.supported_quantities(idata)
        except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
            raise ResultsDamagedError(folder, f"posterior.nc cannot be read as the posterior of a {manifest['kind']} "
                                              f"analysis ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        return cls(manifest["analysis"], manifest["kind"], manifest["title"], idata, tables, quantities, manifest)


#: the manifest's record of the SHA-256 of each file :meth:`AnalysisResult.save` wrote
FILE_HASHES = "files_sha256"
#: keys a manifest must hold to be read back
_MANIFEST_KEYS = {"analysis": str, "kind": str, "title": str, "tables": list}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(folder: Path, path: Path) -> dict:
    """The manifest of a results folder, or :class:`ResultsDamagedError` saying what is wrong with it."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsDamagedError(folder, f"manifest.json cannot be read ({exc})") from None
    if not isinstance(manifest, dict):
        raise ResultsDamagedError(folder, "manifest.json does not hold an object")
    for key, kind in _MANIFEST_KEYS.items():
        if not isinstance(manifest.get(key), kind):
            raise ResultsDamagedError(folder, f"manifest.json has no '{key}' ({kind.__name__})")
    if not all(isinstance(t, str) and t.replace("_", "").isalnum() for t in manifest["tables"]):
        raise ResultsDamagedError(folder, "manifest.json lists tables that are not table names")
    if not isinstance(manifest.get(FILE_HASHES, {}), dict):
        raise ResultsDamagedError(folder, f"manifest.json's '{FILE_HASHES}' is not an object")
    return manifest


@contextmanager
def _python_terms():
    """Errors of writing a results folder from Python (:meth:`AnalysisResult.save`) in Python
    terms: ``force=True`` or another folder, not the command line's ``--force`` / ``--out``."""
    try:
        yield
    except ResultsExistError as exc:
        raise ResultsExistError(str(exc).replace("use --force to replace it or --out for another folder",
                                                 "pass force=True to replace it, or save to another folder")
                                .replace("Use --force to replace it or --out for another folder",
                                         "Pass force=True to replace it, or save to another folder")) from None
    except OutputLocationError as exc:
        raise OutputLocationError(str(exc).replace("choose another --out", "save to another folder")) from None
