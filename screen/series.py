"""Assemble instances into series, one volume each, sorted and checked.

Real exports are messy: de-identification can empty SeriesInstanceUID, and one UID can hold
several volumes (a localizer and the axial stack, two acquisitions, two reconstructions of
different size). We group by UID where there is one and by the acquisition's own identity
where there is not, then split any group that is not one volume.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable

from screen import geometry
from screen.records import FileError, Instance, Series, Stage

logger = logging.getLogger(__name__)

UID_SOURCE = "SeriesInstanceUID"
DERIVED_SOURCE = "derived from StudyInstanceUID, FrameOfReferenceUID, SeriesNumber, Modality"


def group_key(instance: Instance) -> tuple[str, str]:
    """The series an instance belongs to, and how that was decided."""
    if instance.series_instance_uid:
        return instance.series_instance_uid, UID_SOURCE
    parts = (
        instance.study_instance_uid,
        instance.frame_of_reference_uid,
        str(instance.series_number if instance.series_number is not None else ""),
        instance.modality,
        instance.series_description,
    )
    digest = hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]
    return f"derived-{digest}", DERIVED_SOURCE


PixelDigest = Callable[[str], "bytes | None"]


def assemble(instances: Iterable[Instance], *, pixel_digest: PixelDigest | None = None
             ) -> tuple[list[Series], list[FileError]]:
    """Group, split and sort instances into series, in a stable order.

    A second copy of an instance already seen (same SOPInstanceUID in the same series, as
    when a study was exported twice) is left out of the volume and reported, not dropped.
    Slices that repeat a position under a new SOPInstanceUID are told apart by their pixels,
    read (``pixel_digest``, a digest of a file's pixel data) for those positions only: see
    :func:`split_series`.
    """
    groups: dict[tuple[str, str], list[Instance]] = defaultdict(list)
    for instance in instances:
        groups[group_key(instance)].append(instance)
    return assemble_groups(((key, groups[key]) for key in sorted(groups)),
                           pixel_digest=pixel_digest)


def assemble_groups(groups: Iterable[tuple[tuple[str, str], list[Instance]]], *,
                    pixel_digest: PixelDigest | None = None,
                    then: Callable[[Series], Series] | None = None
                    ) -> tuple[list[Series], list[FileError]]:
    """:func:`assemble` for instances already grouped by :func:`group_key`, the groups in key
    order, taken one at a time; ``then`` is given each series as it is made (to store it
    compactly, say), so that only one group's instances need be held as records at once."""
    digest = pixel_digest or _pixel_digest
    series: list[Series] = []
    copies: list[tuple[str, FileError]] = []
    left_out: list[FileError] = []
    for (key, source), members in groups:
        kept = _one_copy_per_uid(sorted(members, key=lambda i: i.path), copies)
        found, left = split_series(key, source, kept, digest)
        series.extend(map(then, found) if then else found)
        left_out.extend(left)
    # Copies are reported in the order their files come, across all groups, then the slices
    # left out of each group's volumes.
    copies.sort(key=lambda copy: copy[0])
    return series, [error for _, error in copies] + left_out


def _one_copy_per_uid(members: list[Instance], copies: list[tuple[str, FileError]]
                      ) -> list[Instance]:
    """One instance per SOPInstanceUID of a group in path order, the larger copy where there
    are two (a short one is usually a truncated transfer); each copy left out is added to
    ``copies`` with the path of the file that showed it to be a copy."""
    kept_of: dict[str, Instance] = {}
    for instance in members:
        uid = instance.sop_instance_uid or instance.path
        kept = kept_of.get(uid)
        if kept is None:
            kept_of[uid] = instance
            continue
        seen_at = instance.path
        if instance.file_size > kept.file_size:
            kept_of[uid], kept, instance = instance, instance, kept
        copies.append((seen_at, FileError(
            instance.path, Stage.GROUP,
            f"duplicate of SOP instance {uid}; kept the copy at {kept.path}",
        )))
    return list(kept_of.values())


def _pixel_digest(path: str) -> bytes | None:
    from screen.headers import pixel_digest

    return pixel_digest(path)


def split_series(key: str, source: str, members: list[Instance],
                 pixel_digest: PixelDigest | None = None) -> tuple[list[Series], list[FileError]]:
    """One Series per volume within a group of instances sharing a key, and the slices left
    out of them.

    Repeated slice positions are resolved in this order: by acquisition number when each
    acquisition then holds every position once; else copies of a slice whose pixels are
    identical keep one copy (the others are reported, and the series says so), read for the
    repeated positions only; then by acquisition number again; else, when every position
    holds the same number of slices with different pixels, they are that many volumes
    (phases of one series), taken in instance-number order. What is still ambiguous stays
    one series, which the rules reject for its repeated positions.
    """
    pixel_digest = pixel_digest or _pixel_digest
    volumes = _split_by(members, _volume_identity)
    left_out: list[FileError] = []
    notes: tuple[str, ...] = ()
    if len(volumes) > 1:
        parts, reason = volumes, "orientation or image size"
    else:
        parts, reason = _by_acquisition(volumes[0]), "acquisition number (positions repeat)"
        if len(parts) == 1 and _repeats(parts[0]):
            kept, left_out = _one_copy_of_identical_slices(key, parts[0], pixel_digest)
            if left_out:
                notes = (f"{len(left_out)} repeated slices with the same pixels as another "
                         "(copies under a new SOP instance UID) left out; listed in the errors",)
            parts = _by_acquisition(kept)
            if len(parts) == 1:
                parts, reason = _split_phases(kept), (
                    "repeated positions with different pixels (one volume per copy, in "
                    "instance-number order)")
            if len(parts) == 1 and _repeats(parts[0]):
                notes += ("slice positions repeat with different pixels, and which slices form "
                          "one volume is ambiguous",)
    if len(parts) == 1:
        return [make_series(key, parts[0], uid_source=source, assembly_warnings=notes)], left_out
    logger.info("series %s holds %d volumes; split by %s", key, len(parts), reason)
    return [
        make_series(f"{key}#{n}", part, uid_source=source, split_reason=f"split by {reason}",
                    assembly_warnings=notes)
        for n, part in enumerate(parts, start=1)
    ], left_out


def _volume_identity(instance: Instance) -> tuple[object, ...]:
    orientation = (
        tuple(round(v, 2) for v in instance.image_orientation)
        if instance.image_orientation else None
    )
    return (orientation, instance.rows, instance.columns)


def _split_by(members: list[Instance], key: Callable[[Instance], object]
              ) -> list[list[Instance]]:
    parts: dict[object, list[Instance]] = defaultdict(list)
    for m in members:
        parts[key(m)].append(m)
    # Largest volume first so that '#1' is the main stack when a localizer rides along.
    return sorted(parts.values(), key=lambda p: (-len(p), p[0].path))


def _by_position(members: list[Instance]) -> dict[tuple[float, ...], list[Instance]] | None:
    """Single-frame slices grouped by position; None when a position is unknown or a file
    holds several frames (those are judged by their own frame positions)."""
    if any(m.image_position is None or m.number_of_frames > 1 for m in members):
        return None
    positions: dict[tuple[float, ...], list[Instance]] = defaultdict(list)
    for m in members:
        positions[_rounded(m.image_position)].append(m)  # type: ignore[arg-type]
    return positions


def _repeats(members: list[Instance]) -> bool:
    positions = _by_position(members)
    return positions is not None and len(positions) < len(members)


def _by_acquisition(members: list[Instance]) -> list[list[Instance]]:
    """Two acquisitions in one UID show up as repeated slice positions: split by acquisition
    number when each acquisition then holds every position once (not when the scanner numbers
    each slice as its own acquisition, which a copied slice would shatter)."""
    if not _repeats(members):
        return [members]
    by_acquisition = _split_by(members, lambda m: m.acquisition_number)
    if len(by_acquisition) > 1 and not any(_repeats(part) for part in by_acquisition) \
            and all(len(part) > 1 for part in by_acquisition):
        return by_acquisition
    return [members]


def _one_copy_of_identical_slices(key: str, members: list[Instance], pixel_digest: PixelDigest
                                  ) -> tuple[list[Instance], list[FileError]]:
    """The members with one slice kept of each set of copies with identical pixels at one
    position, and the copies left out. Only repeated positions have their pixels read."""
    positions = _by_position(members)
    if positions is None:
        return members, []
    kept: list[Instance] = []
    left_out: list[FileError] = []
    for position, copies in positions.items():
        if len(copies) == 1:
            kept.extend(copies)
            continue
        first_of: dict[bytes | str, Instance] = {}
        for copy in sorted(copies, key=lambda m: m.path):
            digest = pixel_digest(copy.path)
            same = first_of.get(digest) if digest is not None else None
            if same is None:
                first_of[digest if digest is not None else copy.path] = copy
                kept.append(copy)
            else:
                left_out.append(FileError(
                    copy.path, Stage.GROUP,
                    f"a copy of the slice at {_where(position)} in series {key} with the same "
                    f"pixels (SOP instance {copy.sop_instance_uid or 'unknown'}); kept the copy "
                    f"at {same.path}"))
    return kept, left_out


def _split_phases(members: list[Instance]) -> list[list[Instance]]:
    """As many volumes as every position has slices (with different pixels, by now), each
    taking one slice per position in instance-number order; or the members as they are when
    positions do not all repeat alike."""
    positions = _by_position(members)
    if positions is None:
        return [members]
    counts = {len(copies) for copies in positions.values()}
    if len(counts) != 1 or (n := counts.pop()) < 2:
        return [members]
    phases: list[list[Instance]] = [[] for _ in range(n)]
    for copies in positions.values():
        ordered = sorted(copies, key=lambda m: (m.instance_number is None, m.instance_number or 0,
                                                m.path))
        for phase, copy in zip(phases, ordered):
            phase.append(copy)
    return phases


def _where(position: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in position) + ") mm"


def _rounded(position: tuple[float, float, float]) -> tuple[float, ...]:
    return tuple(round(v, 2) for v in position)


def make_series(key: str, members: list[Instance], *, uid_source: str = UID_SOURCE,
                split_reason: str = "", assembly_warnings: tuple[str, ...] = ()) -> Series:
    ordered = sort_instances(members)
    return Series(
        key=key,
        instances=tuple(ordered),
        geometry=geometry.measure(ordered),
        uid_source=uid_source,
        split_reason=split_reason,
        assembly_warnings=assembly_warnings,
    )


def without(series: Series, paths: Collection[str]) -> Series:
    """``series`` with the files at ``paths`` left out, its geometry measured again on the
    slices that remain (a gap where one was, say)."""
    kept = [i for i in series.instances if i.path not in paths]
    return make_series(series.key, kept, uid_source=series.uid_source,
                       split_reason=series.split_reason,
                       assembly_warnings=series.assembly_warnings)


def sort_instances(members: list[Instance]) -> list[Instance]:
    """Along the slice normal when every slice has geometry, else by instance number, then path."""
    orientation = members[0].image_orientation
    if orientation and all(m.image_position is not None for m in members):
        order = geometry.slice_order([m.image_position for m in members], orientation)
        return [members[i] for i in order]
    return sorted(members, key=lambda m: (m.instance_number is None, m.instance_number or 0, m.path))
