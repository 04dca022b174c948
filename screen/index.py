"""`screen index`: crawl archives, read headers, assemble series and decide which to screen.

No pixel is read, and the archive is only ever opened for reading. What each file's header
says is kept as columns (`instance_columns`) until its series is assembled, so that memory
grows by some hundred bytes per file, not by a record's thousand.
"""

from __future__ import annotations

import logging
import os
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from screen import paths, tables
from screen.header_reading import default_workers, read_headers
from screen.instance_columns import InstanceColumns, SeriesInstances
from screen.inventory import (
    INVENTORY_SCHEMA,
    error_rows,
    inventory_rows,
    inventory_table,
    observe_identity,
    private_provenance,
)
from screen.records import Decision, FileError, Instance, InventoryEntry, Series
from screen.select import Rules, load_rules
from screen.series import assemble_groups, group_key

if TYPE_CHECKING:  # pseudonymising loads the worklist's schema; indexing alone needs neither
    from screen.pseudonym import Pseudonymizer

logger = logging.getLogger(__name__)

__all__ = ["CONTENT_RULE", "IndexResult", "Progress", "default_workers", "geometry_warnings",
           "index", "inventory_entry", "inventory_table", "observe_identity",
           "private_provenance", "read_headers", "summary", "with_content_decisions",
           "write_outputs"]

CONTENT_RULE = "content"  # the rule name for series the image content ruled out


@dataclass(frozen=True, slots=True)
class IndexResult:
    entries: tuple[InventoryEntry, ...]
    errors: tuple[FileError, ...]
    files_found: int

    @property
    def eligible(self) -> tuple[InventoryEntry, ...]:
        return tuple(e for e in self.entries if e.decision.eligible)

    @property
    def rejected_by_rule(self) -> dict[str, int]:
        """How many series each rule turned away, most first."""
        rules = Counter(e.decision.rule for e in self.entries if not e.decision.eligible)
        return dict(rules.most_common())

    @property
    def abdominal_rejected_for_geometry(self) -> dict[str, int]:
        """Series whose tags say abdominal CT, turned away for their geometry, by rule."""
        rules = Counter(e.decision.rule for e in self.entries if e.abdominal_by_tags)
        return dict(rules.most_common())

    @property
    def errors_by_stage(self) -> dict[str, int]:
        """How many files could not be read or placed at each stage, most first."""
        return dict(Counter(e.stage.value for e in self.errors).most_common())


@dataclass
class Progress:
    """Callbacks a front end can use to show progress; all optional."""

    on_files: Callable[[int, int], None] = field(default=lambda read, errors: None)
    on_stage: Callable[[str], None] = field(default=lambda name: None)


def index(
    roots: Sequence[str | Path],
    *,
    rules: Rules | None = None,
    workers: int | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
    follow_links: bool = False,
) -> IndexResult:
    """Everything found under ``roots``: series with their decisions, and files in error.

    Headers are read in ``executor`` when given, else in a pool of ``workers`` processes (see
    :func:`read_headers`). Links out of the archive are reported and not followed unless
    ``follow_links``.
    """
    rules = rules or load_rules()
    progress = progress or Progress()
    read = InstanceColumns()
    errors: list[FileError] = []
    found = 0
    for outcome in read_headers(roots, workers=workers, executor=executor,
                                follow_links=follow_links):
        found += 1
        if isinstance(outcome, FileError):
            errors.append(outcome)
        else:
            read.append(outcome)
        if found % 256 == 0:
            progress.on_files(found, len(errors))
    progress.on_files(found, len(errors))
    progress.on_stage("assembling series")
    entries: list[InventoryEntry] = []

    def decide(series: Series, compact: Series) -> None:
        # The rules look at every instance: they see records, the entry keeps columns.
        entries.append(replace(inventory_entry(series, rules), series=compact))

    _, left_out = _assemble(read, decide)
    errors.extend(left_out)
    return IndexResult(tuple(entries), tuple(errors), found)


def _assemble(read: InstanceColumns, decide: Callable[[Series, Series], None]
              ) -> tuple[list[Series], list[FileError]]:
    """The series of the instances read, assembled one group at a time, so that only one
    group's instances are records at once; each series keeps its instances as columns of
    ``read``. ``decide`` is given each series as records and as columns."""
    members: dict[tuple[str, str], array[int]] = defaultdict(lambda: array("I"))
    key_of_kind: dict[int, tuple[str, str]] = {}
    for number in range(len(read)):
        kind = read.kind(number)
        key = key_of_kind.get(kind)
        if key is None:  # a group key depends only on what instances of one kind share
            key = key_of_kind[kind] = group_key(read[number])
        members[key].append(number)
    number_of: dict[int, int] = {}  # id of each record of the group at hand -> its number

    def groups() -> Iterator[tuple[tuple[str, str], list[Instance]]]:
        for key in sorted(members):
            numbers = members.pop(key)
            records = [read[n] for n in numbers]
            number_of.clear()
            number_of.update(zip(map(id, records), numbers))
            yield key, records

    def compact(series: Series) -> Series:
        try:
            order = [number_of[id(i)] for i in series.instances]
        except KeyError:  # a record assembly made anew: the series gets columns of its own
            kept = replace(series, instances=SeriesInstances.of(series.instances))
        else:
            kept = replace(series, instances=SeriesInstances(read, order))
        decide(series, kept)
        return kept

    return assemble_groups(groups(), then=compact)


def inventory_entry(series: Series, rules: Rules) -> InventoryEntry:
    decision, confirm = rules.decide(series)
    return InventoryEntry(series, decision, geometry_warnings(series), confirm,
                          abdominal_by_tags=rules.abdominal_by_tags(series, decision))


def with_content_decisions(result: IndexResult, ruled_out: dict[str, str]) -> IndexResult:
    """The result with series whose image content showed no abdomen marked ineligible."""
    entries = tuple(
        replace(e, decision=Decision(False, CONTENT_RULE, ruled_out[e.series.key]))
        if e.series.key in ruled_out else e
        for e in result.entries
    )
    return replace(result, entries=entries)


def geometry_warnings(series: Series) -> tuple[str, ...]:
    g = series.geometry
    warnings = []
    if g.gantry_tilt_deg and abs(g.gantry_tilt_deg) > 0.1:
        warnings.append(f"gantry tilt {g.gantry_tilt_deg:.1f} degrees: corrected when loaded")
    if g.unique_positions and not g.uniform_spacing and g.min_gap_mm is not None:
        warnings.append(f"uneven slice spacing ({g.min_gap_mm:.2f} to {g.max_gap_mm:.2f} mm): "
                        "resampled when loaded")
    if not g.consistent_pixel_spacing:
        warnings.append("pixel spacing differs between slices or is missing")
    if series.split_reason:
        warnings.append(f"one series UID held several volumes; {series.split_reason}")
    warnings.extend(series.assembly_warnings)
    return tuple(warnings)


def write_outputs(result: IndexResult, inventory: Path, errors: Path, *,
                  rules: Rules, roots: Sequence[str | Path],
                  pseudonymizer: Pseudonymizer | None = None) -> None:
    """Inventory then errors, atomically; with a pseudonymizer, no identifier is written."""
    extra: dict[str, object] = {"rules": rules.source,
                                "archives": [paths.to_text(os.path.abspath(r)) for r in roots],
                                "files_found": result.files_found}
    # Batch by batch, so that the rows (every file's path and UID) are never all held at once.
    def inv() -> Iterator:
        return tables.batches_of(inventory_rows(result.entries), INVENTORY_SCHEMA)

    def err() -> Iterator:
        return tables.batches_of(error_rows(result.errors), tables.ERRORS_SCHEMA)

    if pseudonymizer is not None:
        for entry in result.entries:
            observe_identity(pseudonymizer, entry.series)
        extra = private_provenance(extra, pseudonymizer)
        # The inventory first: it teaches the pseudonymizer the identifiers that paths hold.
        tables.write_batches_atomic(INVENTORY_SCHEMA, pseudonymizer.pseudonymize_batches(inv),
                                    inventory, extra)
        tables.write_batches_atomic(tables.ERRORS_SCHEMA, pseudonymizer.pseudonymize_batches(err),
                                    errors, extra)
        return
    tables.write_batches_atomic(INVENTORY_SCHEMA, inv(), inventory, extra)
    tables.write_batches_atomic(tables.ERRORS_SCHEMA, err(), errors, extra)


def summary(result: IndexResult) -> dict[str, object]:
    return {
        "files_found": result.files_found,
        "instances": sum(len(e.series.instances) for e in result.entries),
        "series": len(result.entries),
        "eligible": len(result.eligible),
        "rejected_by_rule": result.rejected_by_rule,
        "abdominal_by_tags_rejected_for_geometry": result.abdominal_rejected_for_geometry,
        "errors_by_stage": result.errors_by_stage,
    }
