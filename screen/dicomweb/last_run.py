"""`--since-last-run`: a nightly sweep takes only the studies that changed since the last one.

A small JSON file beside the worklist remembers each study a finished sweep screened
completely, with its number of instances as QIDO-RS reported it
(NumberOfStudyRelatedInstances). The next sweep takes the studies that are new or whose
count changed: DICOMweb has no standard "last updated" attribute, but an instance added to a
study (a new series, a late reconstruction) changes the count. A study with a series in
error, or whose results could not be stored, is not remembered, so the next run tries it
again.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path

from screen.atomic import write_bytes_atomic
from screen.dicomweb.source import Study
from screen.records import FileError
from screen.worklist_row import ERROR, WorklistRow

logger = logging.getLogger(__name__)

_STUDY_IN_URL = re.compile(r"/studies/([0-9.]+)")


class LastRun:
    """The studies swept completely so far, read from and written to ``<out>.last-run.json``."""

    def __init__(self, out: Path, pacs: str) -> None:
        self.path = Path(out).with_name(Path(out).name + ".last-run.json")
        self.pacs = pacs
        self.swept: dict[str, int | None] = {}
        self._listed: list[Study] = []
        if self.path.exists():
            try:
                state = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"cannot read {self.path}: {exc}; delete it to sweep every "
                                 "study again") from None
            if state.get("pacs") != pacs:
                raise ValueError(f"{self.path} records sweeps of {state.get('pacs')}, not "
                                 f"{pacs}; use another --out for this PACS")
            self.swept = dict(state.get("studies", {}))

    def changed(self, studies: list[Study]) -> list[Study]:
        """The studies that are new or changed since they were last swept."""
        self._listed = studies
        todo = [s for s in studies
                if s.uid not in self.swept or s.instances is None or
                self.swept[s.uid] != s.instances]
        logger.info("since the last run: %d of %d studies are new or changed", len(todo),
                 len(studies))
        return todo

    def save(self, rows: Iterable[WorklistRow], errors: Iterable[FileError]) -> None:
        """Remember the listed studies, less those with a series in error."""
        # A study is done when every series has its score and every result reached the PACS.
        incomplete = {str(r.study_instance_uid) for r in rows
                      if r.status == ERROR or r.stored is False}
        for error in errors:
            match = _STUDY_IN_URL.search(error.path)
            if match:
                incomplete.add(match.group(1))
        for study in self._listed:
            if study.uid in incomplete:
                self.swept.pop(study.uid, None)
            else:
                self.swept[study.uid] = study.instances
        state = {"pacs": self.pacs, "studies": self.swept}
        write_bytes_atomic(self.path, json.dumps(state, indent=1, sort_keys=True).encode())
