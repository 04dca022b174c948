"""`screen index` of a PACS: the studies and series it lists, through the file sweep's rules."""

from __future__ import annotations

import logging

from screen.dicomweb.last_run import LastRun
from screen.dicomweb.source import PacsSource
from screen.index import IndexResult, Progress, inventory_entry
from screen.records import FileError, Instance
from screen.select import Rules, load_rules
from screen.series import assemble

logger = logging.getLogger(__name__)


def index_pacs(source: PacsSource, *, rules: Rules | None = None,
               progress: Progress | None = None,
               last_run: LastRun | None = None) -> IndexResult:
    """Every matching series of the PACS with its decision, and what could not be read.

    With ``last_run``, only the studies new or changed since it (``--since-last-run``); by
    default every study the source's filters match. No pixel is read.
    """
    rules = rules or load_rules()
    progress = progress or Progress()
    progress.on_stage("searching the PACS")
    studies = source.studies()
    if last_run is not None:
        studies = last_run.changed(studies)
    progress.on_stage("reading series metadata")
    instances: list[Instance] = []
    errors: list[FileError] = []
    for outcome in source.read_metadata(studies, on_series=progress.on_files):
        (errors if isinstance(outcome, FileError) else instances).append(outcome)
    progress.on_files(len(instances) + len(errors), len(errors))
    progress.on_stage("assembling series")
    series, duplicates = assemble(instances)
    errors.extend(duplicates)
    entries = tuple(inventory_entry(s, rules) for s in series)
    logger.info("PACS %s: %d studies, %d instances, %d series", source.address, len(studies),
             len(instances), len(series))
    return IndexResult(entries, tuple(errors), len(instances) + len(errors))
