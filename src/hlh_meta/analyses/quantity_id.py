"""The identity of a derived quantity, apart from the label it is shown with.

A :class:`QuantityId` says what a quantity is: its outcome, its kind, the covariate levels
it fixes and the two levels it compares. Labels are worded for readers and may change; an
id does not change with them, so consumers find quantities by id and the tables carry it
(column ``id``) as a stable string.

Grammar of the string (:meth:`QuantityId.__str__`, read back by :meth:`QuantityId.parse`)::

    id       = outcome ":" kind [ ":" profile ] [ ":" contrast ]
    profile  = pair *( "," pair )               ; pairs sorted by covariate
    pair     = covariate "=" level
    contrast = covariate "=" level "|vs=" reference

Each name (outcome, kind, covariate, level, reference) is non-empty and holds none of
``: , | =``. A profile lists the covariates fixed; every other covariate is as in the
included strata, so an id without a profile is the population as included (or, for a kind
such as ``tau``, a quantity of no profile). Examples::

    mortality:mortality_typical                         the population as included
    mortality:mortality_new:trigger=malignancy          a new study, malignancy trigger
    mortality:mortality_typical:arm=anakinra            an arm of the comparative analysis
    mortality:odds_ratio:trigger=malignancy|vs=rheumatological
    mortality:tau
    crp:reduction_pooled
    crp~ferritin:correlation
    crp:ratio_of_means:year=1|vs=0                      per unit of a design column
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

#: characters a name may not hold: they separate the parts of an id's string
RESERVED = ":,|="
VERSUS = "|vs="


def _check(name: str, what: str) -> None:
    if not isinstance(name, str) or not name or any(c in name for c in RESERVED):
        raise ValueError(f"{what} {name!r} must be a non-empty string without any of {' '.join(RESERVED)}")


@dataclass(frozen=True)
class Contrast:
    """Two levels of one covariate compared: ``level`` against ``reference``.

    Parameters
    ----------
    covariate : str
        The covariate (e.g. ``trigger``; ``arm`` for the arms of a comparative analysis;
        a design column for a per-unit ratio).
    level : str
        The level compared (``1`` for one unit of a design column).
    reference : str
        The level it is compared with (``0`` for a design column).
    """

    covariate: str
    level: str
    reference: str

    def __post_init__(self) -> None:
        for name, what in ((self.covariate, "covariate"), (self.level, "level"), (self.reference, "reference")):
            _check(name, what)

    def __str__(self) -> str:
        return f"{self.covariate}={self.level}{VERSUS}{self.reference}"


@dataclass(frozen=True)
class QuantityId:
    """What a derived quantity is, as a hashable record with a stable string.

    The string's grammar is in this module's description; ``str(id)`` writes it and
    :meth:`parse` reads it back to an equal id.

    Parameters
    ----------
    outcome : str
        The outcome the quantity belongs to (``mortality``, ``crp``, ...; ``crp~ferritin``
        for a correlation of two).
    kind : str
        What the quantity is (``mortality_typical``, ``mortality_new``, ``odds_ratio``,
        ``tau``, ``reduction_pooled``, ...): the quantity's ``key``.
    profile : tuple of (str, str), optional
        The covariate levels it fixes, ``(covariate, level)`` sorted by covariate (build it
        from a mapping with :meth:`of`); empty: no covariate fixed.
    contrast : Contrast, optional
        The two levels it compares (an odds ratio, a ratio of means).

    Raises
    ------
    ValueError
        For a name that is empty or holds a reserved character, or a profile that is not
        sorted or names a covariate twice.
    """

    outcome: str
    kind: str
    profile: tuple[tuple[str, str], ...] = ()
    contrast: Contrast | None = None

    def __post_init__(self) -> None:
        _check(self.outcome, "outcome")
        _check(self.kind, "kind")
        for covariate, level in self.profile:
            _check(covariate, "covariate")
            _check(level, "level")
        covariates = [c for c, _ in self.profile]
        if covariates != sorted(set(covariates)):
            raise ValueError(f"profile {self.profile!r} must name each covariate once, sorted")

    @classmethod
    def of(cls, outcome: str, kind: str, profile: Mapping[str, str] | Iterable[tuple[str, str]] = (),
           contrast: Contrast | None = None) -> QuantityId:
        """The id of a quantity with its profile given as a mapping (or pairs) in any order.

        Parameters
        ----------
        outcome : str
            The outcome the quantity belongs to.
        kind : str
            What the quantity is (its ``key``).
        profile : mapping of str to str, or iterable of (str, str), optional
            The covariate levels it fixes, covariate -> level.
        contrast : Contrast, optional
            The two levels it compares.

        Returns
        -------
        QuantityId
            The id, its profile sorted by covariate.
        """
        pairs = profile.items() if isinstance(profile, Mapping) else profile
        return cls(outcome, kind, tuple(sorted((str(c), str(v)) for c, v in pairs)), contrast)

    @classmethod
    def parse(cls, text: str) -> QuantityId:
        """The id a string of this module's grammar names.

        Parameters
        ----------
        text : str
            An id as ``str(id)`` writes it (e.g. ``mortality:odds_ratio:trigger=malignancy|vs=rheumatological``).

        Returns
        -------
        QuantityId
            The id; ``str`` of it is ``text``.

        Raises
        ------
        ValueError
            If ``text`` does not follow the grammar.
        """
        parts = str(text).split(":")
        if len(parts) < 2 or len(parts) > 4:
            raise ValueError(f"{text!r} is not a quantity id (outcome:kind[:profile][:contrast])")
        outcome, kind, *rest = parts
        contrast = None
        if rest and VERSUS in rest[-1]:
            pair, reference = rest.pop().split(VERSUS, 1)
            covariate, _, level = pair.partition("=")
            contrast = Contrast(covariate, level, reference)
        if len(rest) > 1:
            raise ValueError(f"{text!r} is not a quantity id: a profile, then a contrast, at most")
        profile = []
        for pair in rest[0].split(",") if rest else ():
            covariate, eq, level = pair.partition("=")
            if not eq:
                raise ValueError(f"{text!r} is not a quantity id: {pair!r} is not covariate=level")
            profile.append((covariate, level))
        out = cls(outcome, kind, tuple(profile), contrast)
        if str(out) != text:
            raise ValueError(f"{text!r} is not a quantity id as written ({out} is)")
        return out

    def of_kind(self, kind: str) -> QuantityId:
        """The id of the quantity of another kind with the same outcome, profile and contrast.

        Parameters
        ----------
        kind : str
            The other kind (e.g. ``mortality_new`` beside ``mortality_typical``).

        Returns
        -------
        QuantityId
            The same id with ``kind`` replaced.
        """
        return replace(self, kind=kind)

    @property
    def levels(self) -> dict[str, str]:
        """The profile as a mapping, covariate -> level."""
        return dict(self.profile)

    def __str__(self) -> str:
        parts = [self.outcome, self.kind]
        if self.profile:
            parts.append(",".join(f"{c}={v}" for c, v in self.profile))
        if self.contrast is not None:
            parts.append(str(self.contrast))
        return ":".join(parts)
