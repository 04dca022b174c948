"""Keyed pseudonyms for the identifiers in what `screen` writes, and a check that none is left.

A pseudonym is ``<prefix>-`` and the first 16 hex digits of HMAC-SHA256(key, field, value):
the same identifier under the same key always gets the same pseudonym (so rows of one patient
stay together across runs and files), a different key gives unrelated ones, and without the
key nobody can go back.

Re-identification: the hospital keeps the key. To find who ``P-3f2a...`` is, compute the
pseudonyms of candidate identifiers (from the PACS or the RIS) with the same key and match
them: :func:`Pseudonymizer.reidentify` and :func:`Pseudonymizer.reidentify_table` do exactly
that. No mapping table is ever written, so there is none to leak.

Paths: every path component that contains an identifier the pseudonymiser has seen (or is
given) is replaced by the pseudonyms of what it contains, so ``/export/12345678/CT/IM1`` becomes
``/export/P-.../CT/IM1``. Identifiers are seen when a row or table with identifier columns
passes through, so pseudonymise the inventory or worklist before the errors table, whose rows
have only paths.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

import pyarrow as pa

logger = logging.getLogger(__name__)

KEY_BYTES = 32
DIGEST_HEX = 16  # 64 bits: no collisions in any archive, short enough to read out on a phone
# An identifier shorter than this is matched in paths and text only as a whole token:
# "12" must not rewrite every folder holding those two digits.
SUBSTRING_MIN = 4

# Field name -> (prefix, column names that hold it in our tables).
FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "patient_id": ("P", ("patient_id", "PatientID")),
    "patient_name": ("N", ("patient_name", "PatientName")),
    "birth_date": ("B", ("patient_birth_date", "birth_date", "PatientBirthDate")),
    "accession_number": ("A", ("accession_number", "AccessionNumber")),
}
PATH_COLUMNS = ("path", "files", "paths", "folder")
# Keys that join outputs to each other and to the PACS: never rewritten, even where an
# identifier happens to appear inside one.
KEY_COLUMNS = ("series_key", "model_sha256")


def _is_key(column: str) -> bool:
    return column in KEY_COLUMNS or column.endswith(("_uid", "_uids"))
_PSEUDONYM = re.compile(rf"[PNBA]-[0-9a-f]{{{DIGEST_HEX}}}")


class KeyFileError(ValueError):
    """The pseudonymisation key cannot be used."""


def create_key_file(path: Path) -> Path:
    """Write a new key of 32 random bytes (as 64 hex digits) to ``path``, readable only by
    its owner; refuses to overwrite an existing key, which would orphan its pseudonyms."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"key file {path} already exists; a new key would change every pseudonym")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as sink:
        sink.write(secrets.token_hex(KEY_BYTES) + "\n")
    return path


def read_key_file(path: Path) -> bytes:
    """The key in ``path``: 64+ hex digits, or at least 32 raw bytes."""
    path = Path(path)
    if not path.is_file():
        raise KeyFileError(f"pseudonymisation key file {path} not found; create one with "
                        "screen.pseudonym.create_key_file and keep it safe")
    raw = path.read_bytes()
    text = raw.strip()
    if re.fullmatch(rb"[0-9a-fA-F]+", text) and len(text) % 2 == 0:
        key = bytes.fromhex(text.decode())
    else:
        key = raw
    if len(key) < KEY_BYTES:
        raise KeyFileError(f"pseudonymisation key in {path} is {len(key)} bytes; at least {KEY_BYTES} "
                        "random bytes are needed")
    return key


@dataclass(frozen=True, slots=True)
class Hit:
    """An identifier found in an output: in which file, and where."""

    path: Path
    identifier: str
    where: str  # "file name", "byte 1234", or "column patient_id, row 3"


class Pseudonymizer:
    """Pseudonyms under one key; remembers identifiers it has seen, to rewrite paths."""

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray):
            raise TypeError(f"the key must be bytes, got {type(key).__name__}")
        if len(key) < KEY_BYTES:
            raise KeyFileError(f"the key is {len(key)} bytes; at least {KEY_BYTES} random bytes are needed")
        self._key = bytes(key)
        self._seen: dict[str, str] = {}  # identifier -> its pseudonym

    @classmethod
    def from_key_file(cls, path: Path) -> Pseudonymizer:
        return cls(read_key_file(path))

    def __repr__(self) -> str:  # never show the key
        return f"Pseudonymizer({len(self._seen)} identifiers seen)"

    # -- single values ------------------------------------------------------------------------

    def pseudonym(self, field: str, value: str | None) -> str | None:
        """The pseudonym of ``value`` as a ``field`` (patient_id, patient_name, birth_date,
        accession_number); empty and missing values stay as they are."""
        if field not in FIELDS:
            raise ValueError(f"unknown identifier field {field!r}; one of {sorted(FIELDS)}")
        if value is None or str(value).strip() == "":
            return value
        value = str(value).strip()
        if _PSEUDONYM.fullmatch(value):
            return value  # already a pseudonym: applying twice changes nothing
        digest = hmac.new(self._key, f"{field}\x00{value}".encode(), hashlib.sha256).hexdigest()
        pseudonym = f"{FIELDS[field][0]}-{digest[:DIGEST_HEX]}"
        self._remember(field, value, pseudonym)
        return pseudonym

    def patient_id(self, value: str | None) -> str | None:
        return self.pseudonym("patient_id", value)

    def patient_name(self, value: str | None) -> str | None:
        return self.pseudonym("patient_name", value)

    def birth_date(self, value: str | None) -> str | None:
        return self.pseudonym("birth_date", value)

    def accession_number(self, value: str | None) -> str | None:
        return self.pseudonym("accession_number", value)

    def _remember(self, field: str, value: str, pseudonym: str) -> None:
        self._seen[value] = pseudonym
        if field == "patient_name":
            # Folders spell names many ways (DOE^JOHN, Doe_John, JOHN DOE): each part counts.
            for part in re.split(r"[\^\s,_]+", value):
                if len(part) >= 3:
                    self._seen.setdefault(part, pseudonym)

    @property
    def seen(self) -> tuple[str, ...]:
        """Identifiers seen so far (for :func:`find_identifiers`); hold them as carefully as
        the data."""
        return tuple(self._seen)

    # -- paths and text -----------------------------------------------------------------------

    def _matches(self, text: str) -> list[str]:
        lowered = text.lower()
        tokens = {t for t in re.split(r"[^0-9a-z]+", lowered) if t}
        hits = [v for v in self._seen
                if (v.lower() in lowered if len(v) >= SUBSTRING_MIN else v.lower() in tokens)]
        return sorted(hits, key=lambda v: (lowered.find(v.lower()), -len(v)))

    def pseudonymize_path(self, path: str | PurePath) -> str:
        """``path`` with every component that holds a seen identifier replaced by the
        pseudonyms of the identifiers it holds (its file extension kept)."""
        text = str(path)
        if not text:
            return text
        pure = PurePath(text)
        parts = []
        for part in pure.parts:
            found = self._matches(part) if part not in (pure.anchor, "..", ".") else []
            if not found:
                parts.append(part)
                continue
            suffix = PurePath(part).suffix
            suffix = suffix if suffix and not self._matches(suffix) else ""
            names = list(dict.fromkeys(self._seen[v] for v in found))
            parts.append("_".join(names) + suffix)
        return str(PurePath(*parts)) if parts else text

    def pseudonymize_text(self, text: str | None) -> str | None:
        """Free text (an error message, a description) with every seen identifier replaced."""
        if not text:
            return text
        for value in sorted(self._matches(text), key=len, reverse=True):
            if len(value) >= SUBSTRING_MIN:
                text = re.sub(re.escape(value), self._seen[value], text, flags=re.IGNORECASE)
            else:
                text = re.sub(rf"(?<![0-9A-Za-z]){re.escape(value)}(?![0-9A-Za-z])",
                              self._seen[value], text, flags=re.IGNORECASE)
        return text

    # -- rows and tables ----------------------------------------------------------------------

    def observe(self, row: Mapping[str, object]) -> None:
        """Learn the identifiers in ``row`` without changing it."""
        for field, (_, columns) in FIELDS.items():
            for column in columns:
                value = row.get(column)
                if isinstance(value, str):
                    self.pseudonym(field, value)

    def pseudonymize_row(self, row: Mapping[str, object]) -> dict[str, object]:
        """A copy of a worklist, inventory or errors row: identifier columns replaced by their
        pseudonyms, path columns rewritten, any other text scrubbed of seen identifiers."""
        self.observe(row)
        out: dict[str, object] = {}
        identifier_columns = {c: f for f, (_, cols) in FIELDS.items() for c in cols}
        for column, value in row.items():
            if column in identifier_columns:
                out[column] = self.pseudonym(identifier_columns[column], value)  # type: ignore[arg-type]
            elif column in PATH_COLUMNS:
                out[column] = self._paths(value)
            elif isinstance(value, str) and not _is_key(column):
                out[column] = self.pseudonymize_text(value)
            else:
                out[column] = value
        return out

    def _paths(self, value: object) -> object:
        if isinstance(value, str):
            return self.pseudonymize_path(value)
        if isinstance(value, Sequence):
            return [self.pseudonymize_path(v) if isinstance(v, str) else v for v in value]
        return value

    def pseudonymize_table(self, table: pa.Table) -> pa.Table:
        """The table with :meth:`pseudonymize_row` applied to every row; schema and metadata
        kept."""
        if not isinstance(table, pa.Table):
            raise TypeError(f"pseudonymize_table needs a pyarrow Table, got {type(table).__name__}")
        rows = table.to_pylist()
        for row in rows:  # see every identifier first, so that earlier paths learn of later ones
            self.observe(row)
        return pa.Table.from_pylist([self.pseudonymize_row(r) for r in rows], schema=table.schema)

    # -- re-identification --------------------------------------------------------------------

    def reidentify(self, field: str, candidates: Iterable[str]) -> dict[str, str]:
        """Pseudonym -> identifier for the candidate identifiers of ``field``."""
        return {str(self.pseudonym(field, c)): c for c in candidates if c}

    def reidentify_table(self, table: pa.Table, *, patient_ids: Iterable[str] = (),
                         accession_numbers: Iterable[str] = ()) -> pa.Table:
        """``table`` with the pseudonyms of the given candidates turned back into identifiers;
        pseudonyms of anyone not among the candidates stay as they are."""
        lookups = {"patient_id": self.reidentify("patient_id", patient_ids),
                   "accession_number": self.reidentify("accession_number", accession_numbers)}
        columns = {}
        for name in table.column_names:
            values = table[name]
            if name in lookups:
                mapping = lookups[name]
                values = pa.array([mapping.get(v, v) if v else v for v in values.to_pylist()],
                                  type=values.type)
            columns[name] = values
        return pa.table(columns, schema=table.schema)


def find_identifiers(folder: Path, identifiers: Iterable[str]) -> list[Hit]:
    """Every place under ``folder`` where one of ``identifiers`` appears: in file names, in
    every byte of every file (ASCII case ignored), and in the decoded values of Parquet files,
    whose compression can hide a string from a byte search."""
    folder = Path(folder)
    needles = sorted({str(i) for i in identifiers if i and str(i).strip()}, key=len, reverse=True)
    if not needles:
        raise ValueError("find_identifiers needs at least one non-empty identifier")
    hits: list[Hit] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = str(path.relative_to(folder)).lower()
        data = path.read_bytes().lower()
        for needle in needles:
            lowered = needle.lower()
            if lowered in relative:
                hits.append(Hit(path, needle, "file name"))
            encoded = lowered.encode()
            start = data.find(encoded)
            while start != -1:
                hits.append(Hit(path, needle, f"byte {start}"))
                start = data.find(encoded, start + 1)
        if path.suffix == ".parquet":
            hits.extend(_parquet_hits(path, needles))
    return hits


def _parquet_hits(path: Path, needles: Sequence[str]) -> list[Hit]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        logger.warning("could not read %s as Parquet to search it: %s", path, exc)
        return []
    hits = []
    for name in table.column_names:
        for row, value in enumerate(table[name].to_pylist()):
            text = str(value).lower() if value is not None else ""
            hits.extend(Hit(path, n, f"column {name}, row {row}") for n in needles if n.lower() in text)
    metadata = table.schema.metadata or {}
    for key, value in metadata.items():
        text = (key + b" " + value).decode(errors="replace").lower()
        hits.extend(Hit(path, n, "schema metadata") for n in needles if n.lower() in text)
    return hits
