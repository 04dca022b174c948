"""Results back into the PACS: each flagged series' SR and SEG, by STOW-RS or C-STORE.

A store that fails is retried (STOW-RS through the connection's retries, C-STORE here, with
the same backoff), then recorded in the worklist's ``stored`` and ``store_error`` columns,
never dropped. The rows that say so are written to the sweep's part files, so a resumed run
stores what an earlier one could not; the objects' UIDs are stable, so storing one twice
replaces it rather than adding a copy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from pydicom import dcmread
from pydicom.dataset import Dataset

from screen.dicomweb.address import DimseAddress, PacsAddress, is_pacs_address
from screen.dicomweb.connection import BACKOFF_SECONDS, RETRIES, Connection, describe
from screen.records import Series
from screen.worklist_row import WorklistRow

logger = logging.getLogger(__name__)

OWN_AE_TITLE = "SCREEN"
KINDS = ("seg", "sr")  # the SEG first: the SR lists it in its evidence


@dataclass(frozen=True, slots=True)
class StoreTarget:
    """Where results go: a DICOMweb service (STOW-RS) or a DICOM node (C-STORE)."""

    stow: Connection | None = None
    dimse: DimseAddress | None = None
    retries: int = RETRIES
    backoff_seconds: float = BACKOFF_SECONDS

    def __post_init__(self) -> None:
        if (self.stow is None) == (self.dimse is None):
            raise ValueError("a store target is one DICOMweb service or one DICOM node")

    @classmethod
    def parse(cls, text: str, like: Connection | None = None) -> StoreTarget:
        """``dicomweb+http(s)://HOST/PATH`` (with ``like``'s credentials and TLS settings
        when it is the same host) or ``dimse://AET@HOST:PORT``."""
        if is_pacs_address(text):
            address = PacsAddress.parse(text)
            if like is not None and _origin(address) == _origin(like.address):
                return cls(stow=Connection(address, like.credentials, like.verify,
                                           like.max_connections))
            return cls(stow=Connection(address))
        if str(text).startswith("dimse://"):
            return cls(dimse=DimseAddress.parse(text))
        raise ValueError(f"--store-results is dicomweb+http(s)://HOST/PATH or "
                         f"dimse://AET@HOST:PORT, got {text!r}")

    def __str__(self) -> str:
        return str(self.stow.address if self.stow else self.dimse)

    def send(self, datasets: list[Dataset]) -> None:
        """Store every dataset, or raise StoreFailed saying why after the retries."""
        if self.stow is not None:
            try:
                self.stow.client().store_instances(datasets)
            except Exception as exc:  # noqa: BLE001 - said in the row, with the status
                raise StoreFailed(f"STOW-RS to {self} failed: {describe(exc)}") from None
            return
        for attempt in range(self.retries + 1):
            try:
                _c_store(self.dimse, datasets)  # type: ignore[arg-type]
                return
            except StoreFailed as exc:
                if attempt == self.retries:
                    raise StoreFailed(f"C-STORE to {self} failed: {exc}") from None
                time.sleep(self.backoff_seconds * 2 ** attempt)


def _origin(address: PacsAddress) -> tuple[str, str]:
    parts = urlsplit(address.url)
    return parts.scheme, parts.netloc


class StoreFailed(Exception):
    pass


def _c_store(node: DimseAddress, datasets: list[Dataset]) -> None:
    from pynetdicom import AE

    ae = AE(ae_title=OWN_AE_TITLE)
    for sop_class in {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
                      for ds in datasets}:
        ae.add_requested_context(sop_class[0], sop_class[1])
    association = ae.associate(node.host, node.port, ae_title=node.ae_title)
    if not association.is_established:
        raise StoreFailed("no association (the node refused it or could not be reached)")
    try:
        for ds in datasets:
            status = association.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code is None:
                raise StoreFailed("the association ended before the node answered")
            if code not in (0x0000, 0xB000, 0xB006, 0xB007):  # success or warning
                raise StoreFailed(f"the node answered status 0x{code:04X}")
    finally:
        association.release()


def store_flagged(rows: Iterable[WorklistRow], series: dict[str, Series],
                  dicom_out: Path, target: StoreTarget,
                  on_notice: Callable[[str], None] = lambda text: None
                  ) -> list[WorklistRow]:
    """The flagged rows not yet stored, each with ``stored`` and ``store_error`` set after
    trying to store its SR and SEG."""
    from screen.dicom_out.sources import output_path

    updated: list[WorklistRow] = []
    for row in rows:
        if not row.flagged or row.stored is True:
            continue
        key = row.series_key
        files = [output_path(dicom_out, series[key], kind) for kind in KINDS] \
            if key in series else []
        files = [f for f in files if f.is_file()]
        error = None
        if not files:
            error = "no SR or SEG was written for this series (see the log)"
        else:
            try:
                target.send([dcmread(f) for f in files])
            except StoreFailed as exc:
                error = str(exc)
        if error:
            logger.warning("series %s: results not stored: %s", key, error)
        updated.append(replace(row, stored=error is None, store_error=error))
    failed = sum(1 for r in updated if not r.stored)
    if failed:
        on_notice(f"{failed} flagged series' results could not be stored in {target}; the "
                  "worklist says why (store_error), and a resumed run tries again")
    return updated
