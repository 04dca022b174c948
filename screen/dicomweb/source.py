"""A PACS as the source of a sweep: which studies, their series' metadata, and their pixels.

    QIDO-RS studies (filters) ─▶ QIDO-RS series (modality) ─▶ WADO-RS series metadata
        ─▶ instance records ─▶ the file sweep's assembly, geometry checks and rules

Metadata requests run ``max_connections`` at a time. A study or series whose request fails
after its retries becomes an error row (stage ``crawl`` or ``header``) naming its URL and the
HTTP status; the search for studies itself failing stops the sweep before any work.

A PACS that changes during a sweep: the sweep screens what the metadata listed when it was
read. Instances added later are not part of this sweep (the next ``--since-last-run`` run
sees their study changed and sweeps it again); an instance deleted between metadata and
retrieval makes its series' row an error saying so.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from screen.dicomweb.address import PacsAddress
from screen.dicomweb.connection import Connection, PacsError, describe
from screen.dicomweb.metadata import (
    SERIES_UID,
    SOP_UID,
    STUDY_UID,
    dataset_of,
    first_value,
    instances_of,
)
from screen.records import FileError, Instance, Series, Stage

logger = logging.getLogger(__name__)

_DATE = re.compile(r"^\d{8}$")
PAGE = 500  # QIDO-RS results asked for at a time
STUDY_FIELDS = ["StudyInstanceUID", "StudyDate", "AccessionNumber", "NumberOfStudyRelatedInstances"]


def paged(search: Callable[..., list[dict]], page: int = PAGE) -> list[dict]:
    """Every result of a QIDO-RS search, ``page`` at a time (limit and offset).

    Servers cap how many results one answer holds; some ignore an offset sent without a
    limit, so both are always sent.
    """
    results: list[dict] = []
    while True:
        subset = search(limit=page, offset=len(results))
        results.extend(subset)
        if len(subset) < page:
            return results


@dataclass(frozen=True, slots=True)
class Filters:
    """Which studies and series a PACS sweep takes (QIDO-RS matching)."""

    since: str = ""  # StudyDate from, YYYYMMDD
    until: str = ""  # StudyDate to, YYYYMMDD
    modality: str = "CT"
    study_uids: tuple[str, ...] = ()
    accessions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value and not _DATE.match(value):
                raise ValueError(f"--{name} is a date as YYYYMMDD, got {value!r}")
        if self.since and self.until and self.since > self.until:
            raise ValueError(f"--since {self.since} is after --until {self.until}")
        if not isinstance(self.study_uids, tuple) or not isinstance(self.accessions, tuple):
            raise TypeError("study_uids and accessions must be tuples")

    def study_queries(self) -> Iterator[dict[str, str]]:
        """The QIDO-RS study searches to run: one per listed UID or accession, else one."""
        base: dict[str, str] = {}
        if self.modality:
            base["ModalitiesInStudy"] = self.modality
        if self.since or self.until:
            base["StudyDate"] = f"{self.since}-{self.until}"
        if not self.study_uids and not self.accessions:
            yield base
        for uid in self.study_uids:
            yield base | {"StudyInstanceUID": uid}
        for accession in self.accessions:
            yield base | {"AccessionNumber": accession}


@dataclass(frozen=True, slots=True)
class Study:
    """A study as QIDO-RS listed it."""

    uid: str
    instances: int | None  # NumberOfStudyRelatedInstances: how a change is noticed


@dataclass(frozen=True, slots=True)
class PacsSource:
    """Everything a sweep needs to read one PACS; travels to the workers that load pixels."""

    connection: Connection
    filters: Filters = field(default_factory=Filters)
    cache: Path | None = None  # keep retrieved instances here; None: never on disk

    @property
    def address(self) -> PacsAddress:
        return self.connection.address

    # -- index: runs in the sweep's own process ------------------------------------------

    def studies(self) -> list[Study]:
        """Every study the filters match, once each; raises PacsError when it cannot search."""
        client = self.connection.client()
        found: dict[str, Study] = {}
        for query in self.filters.study_queries():
            try:
                items = paged(lambda **page: client.search_for_studies(
                    search_filters=query, fields=STUDY_FIELDS, **page))
            except Exception as exc:  # noqa: BLE001 - one line, before any work
                raise PacsError(f"cannot search the PACS at {self.address}: {describe(exc)}"
                                ) from None
            for item in items:
                uid = first_value(item, STUDY_UID)
                count = first_value(item, "00201208")
                found.setdefault(uid, Study(uid, int(count) if count.isdigit() else None))
        return list(found.values())

    def read_metadata(self, studies: list[Study],
                      on_series: Callable[[int, int], None] = lambda found, errors: None
                      ) -> Iterator[Instance | FileError]:
        """Every instance of the studies' matching series, or why a study or series is lost."""
        client = self.connection.client()
        found = errors = 0
        with ThreadPoolExecutor(max_workers=self.connection.max_connections,
                                thread_name_prefix="pacs-metadata") as pool:
            series = pool.map(lambda s: self._series_of(client, s), studies)
            listed = [item for outcome in series for item in outcome]
            for outcome in pool.map(lambda ref: self._metadata(client, ref), listed):
                for item in outcome:
                    found += 1
                    errors += isinstance(item, FileError)
                    yield item
                on_series(found, errors)

    def _series_of(self, client, study: Study) -> list[tuple[str, str] | FileError]:
        query = {"Modality": self.filters.modality} if self.filters.modality else {}
        try:
            items = paged(lambda **page: client.search_for_series(
                study.uid, search_filters=query, fields=["SeriesInstanceUID"], **page))
        except Exception as exc:  # noqa: BLE001 - the study becomes an error row
            return [FileError(self.address.study(study.uid), Stage.CRAWL,
                              f"cannot list the study's series: {describe(exc)}")]
        return [(study.uid, first_value(item, SERIES_UID)) for item in items]

    def _metadata(self, client, ref: tuple[str, str] | FileError) -> list[Instance | FileError]:
        if isinstance(ref, FileError):
            return [ref]
        study_uid, series_uid = ref
        try:
            items = client.retrieve_series_metadata(study_uid, series_uid)
        except Exception as exc:  # noqa: BLE001 - the series becomes an error row
            return [FileError(self.address.series(study_uid, series_uid), Stage.HEADER,
                              f"cannot read the series' metadata: {describe(exc)}")]
        return instances_of(self.address, items)

    # -- pixels: run on the worker that loads the series -----------------------------------

    def reader(self, series: Series) -> Callable[[str], Dataset]:
        """Each instance of ``series``, pixels included, by its path (its WADO-RS URL)."""
        from screen.dicomweb.retrieve import SeriesRetrieval

        return SeriesRetrieval(self, series)

    def headers(self, series: Series) -> list[Dataset]:
        """Each instance's header (no pixels), in the series' order, from WADO-RS metadata."""
        first = series.first
        try:
            items = self.connection.client().retrieve_series_metadata(
                first.study_instance_uid, first.series_instance_uid)
        except Exception as exc:  # noqa: BLE001 - said in one line with its status
            raise PacsError(f"cannot read the metadata of series {first.series_instance_uid}: "
                            f"{describe(exc)}") from None
        by_uid = {first_value(i, SOP_UID): i for i in items}
        missing = [i.sop_instance_uid for i in series.instances if i.sop_instance_uid not in by_uid]
        if missing:
            raise PacsError(f"{len(missing)} instances of series {first.series_instance_uid} "
                            "are no longer in the PACS")
        return [dataset_of(by_uid[i.sop_instance_uid]) for i in series.instances]
