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

Folders spell an identifier many ways, so a component is compared with each identifier in a
normalised form: accents stripped (also as German spells them without: Ü as UE), case folded,
and every character that is not a letter or digit dropped, with bytes that are not UTF-8 read
as Latin-1. ``MULLER^JORG``, ``muller_jorg``, ``Mueller Joerg`` and ``M\xfcller`` all hold
``MÜLLER^JÖRG`` (each part of a name counts on its own), and ``ACC0815`` holds ``ACC-0815``.
An identifier under four characters in that form counts only as a whole word. Free text
(messages, descriptions) is read word by word the same way, and every path in it as a path,
so a path reads the same in a message as in the inventory.

Logs: :func:`hide_in_logs` makes every log message of the process pass through the same
rewriting, so warnings printed while a pseudonymised sweep runs name no patient either.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

import pyarrow as pa

from screen import paths, worklist_row

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
# The inventory's and errors' columns that hold paths (the worklist holds none).
PATH_COLUMNS = ("path", "files", "paths", "folder")
# Keys that join outputs to each other and to the PACS: never rewritten, even where an
# identifier happens to appear inside one. The worklist's record names its own; every
# table's UIDs are keys too.
KEY_COLUMNS = worklist_row.KEY_COLUMNS


def _is_key(column: str) -> bool:
    return column in KEY_COLUMNS or column.endswith(("_uid", "_uids"))


_PSEUDONYM = re.compile(rf"[PNBA]-[0-9a-f]{{{DIGEST_HEX}}}")
# A path in a message: from a slash at the start of a word to the end of the text, a line, or
# a ': ', '; ' or ', ' (messages put the path first: "/a/b/IM1: pixel data ... is damaged").
_PATH_IN_TEXT = re.compile(r"((?<!\S)/.*?(?=[:;,]\s|[:;,]?$|[\r\n]))", re.MULTILINE)
_WORD = re.compile(r"\S+")
_COMPONENT_CACHE = 1 << 16
_SURROGATE = re.compile("[\udc80-\udcff]")  # a byte of a name that is not UTF-8
_NOT_ALNUM = re.compile(r"[\W_]+")
# How German writes its letters without accents, as folder names often do (MUELLER).
_GERMAN = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "AE", "Ö": "OE", "Ü": "UE",
                         "ß": "ss"})


def normalised(text: str) -> str:
    """``text`` as identifiers are compared: bytes that are not UTF-8 read as Latin-1, accents
    stripped, case folded, and only letters and digits kept."""
    return "".join(_words(text))


def _words(text: str) -> list[str]:
    readable = paths.readable(text) if "\\" in text or _SURROGATE.search(text) else text
    decomposed = unicodedata.normalize("NFKD", readable)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return [w for w in _NOT_ALNUM.split(plain) if w]  # letters and digits of any script


def normal_forms(value: str) -> set[str]:
    """The normalised forms of an identifier: with accents stripped, and as German spells it
    without them."""
    return {f for f in (normalised(value), normalised(value.translate(_GERMAN))) if f}


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
        self._forms: dict[str, str] = {}  # each identifier's normalised forms -> its pseudonym
        self._components: dict[str, str] = {}  # a path component -> what it is written as

    @classmethod
    def from_key_file(cls, path: Path) -> Pseudonymizer:
        return cls(read_key_file(path))

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_components"] = {}  # a cache: rebuilt where it is used
        return state

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
        if value in self._seen:
            return
        self._seen[value] = pseudonym
        values = [value]
        if field == "patient_name":
            # Folders spell names many ways (DOE^JOHN, Doe_John, JOHN DOE): each part counts.
            for part in re.split(r"[\^\s,_=]+", value):
                if len(part) >= 3:
                    self._seen.setdefault(part, pseudonym)
                    values.append(part)
        for one in values:
            for form in normal_forms(one):
                self._forms.setdefault(form, pseudonym)
        self._components.clear()  # what a component holds may have changed

    @property
    def seen(self) -> tuple[str, ...]:
        """Identifiers seen so far (for :func:`find_identifiers`); hold them as carefully as
        the data."""
        return tuple(self._seen)

    # -- paths and text -----------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """A keyed fingerprint of the key, ``K-`` and 16 hex digits: the same for the same key,
        recorded in outputs to tell which key made them; the key cannot be had from it."""
        digest = hmac.new(self._key, b"screen key fingerprint", hashlib.sha256).hexdigest()
        return f"K-{digest[:DIGEST_HEX]}"

    def _matches(self, text: str) -> list[str]:
        """The pseudonyms of the identifiers ``text`` holds, in the order they appear."""
        if not self._forms:
            return []
        flat = normalised(text)
        if not flat:
            return []
        words = set(_words(text))
        hits = []
        for form, pseudonym in self._forms.items():
            if len(form) >= SUBSTRING_MIN:
                at = flat.find(form)
            else:
                at = flat.find(form) if form in words else -1
            if at >= 0:
                hits.append((at, -len(form), pseudonym))
        return list(dict.fromkeys(p for _, _, p in sorted(hits)))

    def _component(self, part: str) -> str:
        """One path component (or word), or the pseudonyms of the identifiers it holds."""
        known = self._components.get(part)
        if known is not None:
            return known
        found = self._matches(part)
        written = part
        if found:
            suffix = PurePath(part).suffix
            suffix = suffix if suffix and not self._matches(suffix) else ""
            written = "_".join(found) + suffix
        if len(self._components) < _COMPONENT_CACHE:
            self._components[part] = written
        return written

    def pseudonymize_path(self, path: str | PurePath) -> str:
        """``path`` with every component that holds a seen identifier replaced by the
        pseudonyms of the identifiers it holds (its file extension kept)."""
        text = str(path)
        if not text:
            return text
        pure = PurePath(text)
        parts = [part if part in (pure.anchor, "..", ".") else self._component(part)
                 for part in pure.parts]
        return str(PurePath(*parts)) if parts else text

    def pseudonymize_text(self, text: str | None) -> str | None:
        """Free text (an error message, a description) with every seen identifier replaced:
        each path in it as :meth:`pseudonymize_path` writes paths, each other word as a path
        component."""
        if not text or not self._forms:
            return text
        out = []
        for piece in _PATH_IN_TEXT.split(text):
            if piece.startswith("/"):
                out.append(self.pseudonymize_path(piece))
            else:
                out.append(_WORD.sub(lambda m: self._word(m.group()), piece))
        return "".join(out)

    def _word(self, word: str) -> str:
        if "/" in word:
            return self.pseudonymize_path(word)
        return self._component(word)

    def pseudonymize_command(self, argv: Sequence[str]) -> list[str]:
        """A command line with every identifier in its arguments (paths among them) replaced."""
        return [self.pseudonymize_text(a) or a for a in argv]

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

    def pseudonymize_worklist_row(self, row: worklist_row.WorklistRow) -> worklist_row.WorklistRow:
        """:meth:`pseudonymize_row` for a worklist row."""
        return worklist_row.WorklistRow.from_dict(self.pseudonymize_row(row.as_dict()))

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
        return pa.Table.from_batches(list(self.pseudonymize_batches(lambda: [table])),
                                     schema=table.schema)

    def pseudonymize_batches(self, batches: Callable[[], Iterable[pa.RecordBatch | pa.Table]]
                             ) -> Iterator[pa.RecordBatch]:
        """What ``batches()`` gives, with :meth:`pseudonymize_row` applied to every row, one
        batch at a time; ``batches`` is called twice: every row is seen first, so that earlier
        paths learn of identifiers in later rows."""
        for batch in batches():
            for row in batch.to_pylist():
                self.observe(row)
        for batch in batches():
            yield pa.RecordBatch.from_pylist(
                [self.pseudonymize_row(r) for r in batch.to_pylist()], schema=batch.schema)

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


# -- logs -------------------------------------------------------------------------------------

_log_pseudonymizer: Pseudonymizer | None = None


def hide_in_logs(pseudonymizer: Pseudonymizer | None) -> None:
    """From now on, every log record this process makes, whatever its logger, has its message
    (and any traceback) pseudonymised by ``pseudonymizer``; None stops it.

    One record factory does it for every logger, so no warning anywhere in the code (or in a
    library) needs to remember to hide the paths it names. The pseudonymizer keeps learning:
    identifiers it sees later are hidden in later records.
    """
    global _log_pseudonymizer
    if pseudonymizer is not None and not isinstance(pseudonymizer, Pseudonymizer):
        raise TypeError(f"hide_in_logs needs a Pseudonymizer, got {type(pseudonymizer).__name__}")
    if _log_pseudonymizer is None and pseudonymizer is not None:
        logging.setLogRecordFactory(_private_record(logging.getLogRecordFactory()))
    _log_pseudonymizer = pseudonymizer


def _private_record(make_record):
    def factory(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        pseudonymizer = _log_pseudonymizer
        if pseudonymizer is None:
            return record
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed call still logs, as logging itself does
            message = str(record.msg)
        record.msg, record.args = pseudonymizer.pseudonymize_text(message), ()
        if record.exc_info and not record.exc_text:
            traceback = logging.Formatter().formatException(record.exc_info)
            record.exc_text = pseudonymizer.pseudonymize_text(traceback)
        return record

    return factory
