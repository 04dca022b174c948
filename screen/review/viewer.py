"""Links that open a series' study in the site's own viewer, from a URL template.

The template names ``{study}``, ``{series}`` and ``{accession}``; each is filled with the
row's value, URL-encoded. With ``--pseudonymize`` the rows hold a pseudonym for the accession
number and keep the real Study and Series Instance UIDs (those are the keys that join our
outputs to the PACS, and pseudonymisation leaves them as they are everywhere). A link can
therefore carry the UIDs, which the report already shows, but never the real accession
number: a template with ``{accession}`` is refused with pseudonyms, because the viewer could
not find a study by its pseudonym and the report must not hold the real one.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlparse

from screen.worklist_row import columns

FIELDS = dict(zip(("study", "series", "accession"),
                  columns("study_instance_uid", "series_instance_uid", "accession_number")))


@dataclass(frozen=True, slots=True)
class ViewerLink:
    """A checked viewer URL template."""

    template: str

    def __post_init__(self) -> None:
        if not isinstance(self.template, str):
            raise TypeError(f"a viewer URL template must be a string, got {self.template!r}")
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(self.template) if name is not None]
        except ValueError as exc:
            raise ValueError(f"viewer URL {self.template!r} is not a template: {exc}") from None
        unknown = sorted(set(names) - set(FIELDS))
        if unknown:
            raise ValueError(f"viewer URL {self.template!r} names {', '.join(unknown)}; it may "
                             f"use {{study}}, {{series}} and {{accession}}")
        if not names:
            raise ValueError(f"viewer URL {self.template!r} names none of {{study}}, {{series}}, "
                             "{accession}")
        if urlparse(self.template).scheme not in ("http", "https"):
            raise ValueError(f"viewer URL {self.template!r} must start with http:// or https://")

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(n for _, n, _, _ in string.Formatter().parse(self.template) if n)

    def check_pseudonymized(self) -> None:
        """Refuse a template that would need the real accession number in a pseudonymised report."""
        if "accession" in self.fields:
            raise ValueError("--viewer-url with {accession} cannot be used with --pseudonymize: "
                             "the report would need the real accession number; use {study} or "
                             "{series}")

    def url(self, row: Mapping[str, object]) -> str | None:
        """The link for a row's column values (``WorklistRow.as_dict()``); None when a value
        it needs is missing."""
        values = {}
        for name in self.fields:
            value = row.get(FIELDS[name])
            if value is None or value == "":
                return None
            values[name] = quote(str(value), safe="")
        return self.template.format(**values)
