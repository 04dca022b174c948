"""The inventory and errors tables `screen index` writes: the inventory's schema, one row per
series, and what keeps a pseudonymised index free of identifiers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import pyarrow as pa

from screen import paths, tables
from screen.records import FileError, InventoryEntry, Series
from screen.select import facts

if TYPE_CHECKING:  # only named in annotations: indexing without pseudonyms never loads it
    from screen.pseudonym import Pseudonymizer

INVENTORY_SCHEMA = pa.schema([
    ("series_key", pa.string()),
    ("series_instance_uid", pa.string()),
    ("uid_source", pa.string()),
    ("study_instance_uid", pa.string()),
    ("patient_id", pa.string()),
    ("accession_number", pa.string()),
    ("study_date", pa.string()),
    ("modality", pa.string()),
    ("sop_class_uid", pa.string()),
    ("body_part_examined", pa.string()),
    ("series_description", pa.string()),
    ("study_description", pa.string()),
    ("protocol_name", pa.string()),
    ("manufacturer", pa.string()),
    ("convolution_kernel", pa.string()),
    ("image_type", pa.string()),
    ("transfer_syntax_uid", pa.string()),
    ("n_instances", pa.int32()),
    ("n_slices", pa.int32()),
    ("rows", pa.int32()),
    ("columns", pa.int32()),
    ("pixel_spacing_mm", pa.list_(pa.float32())),
    ("slice_thickness_mm", pa.float32()),
    ("orientation", pa.string()),
    ("single_orientation", pa.bool_()),
    ("obliquity_deg", pa.float32()),
    ("unique_positions", pa.bool_()),
    ("uniform_spacing", pa.bool_()),
    ("slice_spacing_mm", pa.float32()),
    ("min_gap_mm", pa.float32()),
    ("max_gap_mm", pa.float32()),
    ("consistent_pixel_spacing", pa.bool_()),
    ("consistent_image_size", pa.bool_()),
    ("gantry_tilt_deg", pa.float32()),
    ("z_coverage_mm", pa.float32()),
    ("eligible", pa.bool_()),
    ("rule", pa.string()),
    ("reason", pa.string()),
    ("needs_content_check", pa.bool_()),
    ("abdominal_by_tags", pa.bool_()),
    ("warnings", pa.list_(pa.string())),
    ("split_reason", pa.string()),
    ("files", pa.list_(pa.string())),
    ("sop_instance_uids", pa.list_(pa.string())),
])



def inventory_table(entries: Iterable[InventoryEntry]) -> pa.Table:
    return tables.table_of(inventory_rows(entries), INVENTORY_SCHEMA)


def inventory_rows(entries: Iterable[InventoryEntry]) -> Iterator[dict[str, object]]:
    return (_inventory_row(e) for e in entries)


def errors_table(errors: Iterable[FileError]) -> pa.Table:
    return tables.table_of(error_rows(errors), tables.ERRORS_SCHEMA)


def error_rows(errors: Iterable[FileError]) -> Iterator[dict[str, object]]:
    return ({"path": paths.to_text(e.path), "stage": e.stage.value, "error": paths.to_text(e.error)}
            for e in errors)


def observe_identity(pseudonymizer: Pseudonymizer, series: Series) -> None:
    """Teach the pseudonymizer every identifier of a series' patient, so that none of them
    survives in a path or a message, even those (name, birth date) we never write."""
    first = series.first
    pseudonymizer.observe({"patient_id": first.patient_id, "patient_name": first.patient_name,
                           "birth_date": first.patient_birth_date,
                           "accession_number": first.accession_number})


def private_provenance(extra: dict[str, object], pseudonymizer: Pseudonymizer
                       ) -> dict[str, object]:
    """Provenance whose command line and archive paths name no patient, and which records
    the key's fingerprint."""
    scrubbed = dict(extra)
    scrubbed["command"] = pseudonymizer.pseudonymize_command(
        tables.provenance()["command"])  # type: ignore[arg-type]
    scrubbed["pseudonymized_with"] = pseudonymizer.fingerprint
    if "archives" in scrubbed:
        scrubbed["archives"] = [pseudonymizer.pseudonymize_path(a)
                                for a in scrubbed["archives"]]  # type: ignore[union-attr]
    return scrubbed


def _inventory_row(entry: InventoryEntry) -> dict[str, object]:
    # Instances kept as columns are records again once here, not once per column below.
    s = replace(entry.series, instances=tuple(entry.series.instances))
    g, d = s.geometry, entry.decision
    first = s.first
    f = facts(s)  # the same view of the series the rules saw
    return {
        "series_key": s.key,
        "series_instance_uid": first.series_instance_uid,
        "uid_source": s.uid_source,
        "study_instance_uid": first.study_instance_uid,
        "patient_id": first.patient_id,
        "accession_number": first.accession_number,
        "study_date": first.study_date,
        "modality": first.modality,
        "sop_class_uid": first.sop_class_uid,
        "body_part_examined": first.body_part_examined,
        "series_description": first.series_description,
        "study_description": first.study_description,
        "protocol_name": first.protocol_name,
        "manufacturer": first.manufacturer,
        "convolution_kernel": first.convolution_kernel,
        "image_type": "\\".join(f["image_type"]),
        "transfer_syntax_uid": first.transfer_syntax_uid,
        "n_instances": len(s.instances),
        "n_slices": s.n_frames,
        "rows": first.rows,
        "columns": first.columns,
        "pixel_spacing_mm": list(first.pixel_spacing) if first.pixel_spacing else None,
        "slice_thickness_mm": f["slice_thickness_mm"],
        "orientation": f["plane"][0],
        "single_orientation": g.single_orientation,
        "obliquity_deg": g.obliquity_deg,
        "unique_positions": g.unique_positions,
        "uniform_spacing": g.uniform_spacing,
        "slice_spacing_mm": g.slice_spacing_mm,
        "min_gap_mm": g.min_gap_mm,
        "max_gap_mm": g.max_gap_mm,
        "consistent_pixel_spacing": g.consistent_pixel_spacing,
        "consistent_image_size": g.consistent_image_size,
        "gantry_tilt_deg": g.gantry_tilt_deg,
        "z_coverage_mm": g.z_coverage_mm,
        "eligible": d.eligible,
        "rule": d.rule or None,
        "reason": d.reason or None,
        "needs_content_check": d.eligible and bool(entry.confirm),
        "abdominal_by_tags": entry.abdominal_by_tags,
        "warnings": list(entry.confirm + entry.warnings),
        "split_reason": s.split_reason or None,
        "files": [paths.to_text(i.path) for i in s.instances],
        "sop_instance_uids": [i.sop_instance_uid for i in s.instances],
    }
