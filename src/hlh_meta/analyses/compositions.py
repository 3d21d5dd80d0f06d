"""Which patients the included strata hold: their known shares of every covariate level,
read from a fit's constant data.

A profile that fixes one covariate at a level and takes the others as in the included
strata (a standardised profile) pairs that level with the other levels of every stratum.
Where no stratum of known composition holds a pair (e.g. adult and rheumatological), the
profile describes patients no study observed: :meth:`Compositions.unobserved` names those
pairs and the share of the standardising weight they carry. :meth:`Compositions.pure`
gives a level's own strata (every patient of known composition at that level), whose
model mortality describes patients who exist. :meth:`Compositions.within_study` says
whether any study holds both levels of a contrast, or whether it compares studies only.
"""

from __future__ import annotations

import numpy as np

GROUPS = ("trigger", "age_group", "iv_fraction")
ROUTE_COLUMN = "iv_fraction"
#: how the caveat of a standardised profile that describes unobserved patients begins
UNOBSERVED = "standardised to the included strata"


def group_of(column: str) -> str:
    """The covariate a design column or category belongs to (``trigger[malignancy]`` -> ``trigger``)."""
    return ROUTE_COLUMN if column == ROUTE_COLUMN else column.split("[", 1)[0]


class Compositions:
    """The included rows' known share of each category (NaN: unknown) of each covariate group."""

    def __init__(self, constant_data, references: dict[str, str]):
        cd = constant_data
        self.keep = cd["weight"].values > 0
        self.n = cd["total"].values.astype(float)
        self.study = cd["row_study"].values
        self.references = references
        self.shares: dict[str, dict[str, np.ndarray]] = {}
        for g in GROUPS:
            name = f"known_shares_{g}"
            if name in cd:
                self.shares[g] = {str(c): cd[name].sel({f"{g}_category": c}).values
                                  for c in cd[f"{g}_category"].values}

    def known(self, category: str) -> np.ndarray:
        """Each row's known share of a category (a design column or ``<group>[rest]``); NaN: unknown."""
        return self.shares.get(group_of(category), {}).get(category, np.full(self.keep.size, np.nan))

    def _holds(self, category: str) -> np.ndarray:
        return self.keep & (np.nan_to_num(self.known(category), nan=0.0) > 0)

    def name(self, category: str) -> str:
        """A category as a reader says it (the rest of a group is its reference level)."""
        g = group_of(category)
        if category == ROUTE_COLUMN:
            return "intravenous"
        if category.endswith("[rest]"):
            return self.references.get(g, "subcutaneous" if g == ROUTE_COLUMN else "the reference level")
        return category[len(g) + 1:-1]

    def informing(self, categories: list[str]) -> tuple[int, int, bool]:
        """Studies and patients in included rows of known composition holding every category, and
        whether none does (an extrapolation)."""
        hit = self.keep.copy()
        for c in categories:
            hit &= self._holds(c)
        return len(set(self.study[hit])), int(self.n[hit].sum()), not hit.any()

    def holding_any(self, categories: list[str]) -> tuple[int, int]:
        """Studies and patients in included rows of known composition holding any of the categories."""
        hit = np.zeros(self.keep.size, dtype=bool)
        for c in categories:
            hit |= self._holds(c)
        return len(set(self.study[hit])), int(self.n[hit].sum())

    def held(self, a: str, b: str) -> bool:
        """Whether a stratum of known composition holds both categories."""
        return bool((self._holds(a) & self._holds(b)).any())

    def unobserved(self, category: str) -> tuple[list[str], float]:
        """The pairs a standardised profile at ``category`` creates that no stratum of known
        composition holds (as ``level × level``), and the share of the included patients
        whose copies fall in at least one of them."""
        own = group_of(category)
        pairs, inside = [], np.ones(self.keep.size)
        for g, cats in self.shares.items():
            if g == own:
                continue
            missing = [c for c in cats if self._holds(c).any() and not self.held(category, c)]
            pairs += [f"{self.name(category)} × {self.name(c)}" for c in missing]
            inside *= 1.0 - sum((np.nan_to_num(self.known(c), nan=0.0) for c in missing), np.zeros(self.keep.size))
        outside = 1.0 - inside
        total = float(self.n[self.keep].sum())
        share = float((self.n * outside)[self.keep].sum() / total) if total > 0 else 0.0
        return pairs, share

    def pure(self, category: str) -> np.ndarray:
        """The included rows whose every patient is known to be of this category."""
        return self.keep & np.isclose(np.nan_to_num(self.known(category), nan=0.0), 1.0)

    def within_study(self, a: str, b: str) -> bool:
        """Whether some study holds patients of both categories (in one stratum or two)."""
        return bool(set(self.study[self._holds(a)]) & set(self.study[self._holds(b)]))
