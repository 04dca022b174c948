"""Model packages: a folder with a card (`model.json`), ONNX networks and torch weights.

Where packages are found: a path to a package folder is used as is; a bare name is looked
up in each folder listed in the ``SCREEN_ENGINES`` environment variable (separated like
PATH), then in the ``engines/`` folder beside the ``screen`` source tree (a checkout or an
editable install). An installed copy of ``screen`` without a checkout needs
``SCREEN_ENGINES`` to point at the folder that holds its packages.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from screen.model.card import CARD_FILE, CardError, ModelCard, NetworkCard, read_card

logger = logging.getLogger(__name__)

ENGINES_ENV = "SCREEN_ENGINES"
DEFAULT_PACKAGE = "pancreas-phantom-v1"


def engines_dirs() -> tuple[Path, ...]:
    """Folders searched for packages by name, in order."""
    listed = [Path(p) for p in os.environ.get(ENGINES_ENV, "").split(os.pathsep) if p]
    return (*listed, Path(__file__).resolve().parents[2] / "engines")


@dataclass(frozen=True, slots=True)
class ModelPackage:
    path: Path
    card: ModelCard
    sha256: str  # of the card and every ONNX network, for provenance and caches

    @classmethod
    def load(cls, path: Path | str) -> ModelPackage:
        path = Path(path)
        if not path.is_dir():
            raise ValueError(f"{path}: not a model package folder")
        card = read_card(path / CARD_FILE)
        for network in card.networks.values():
            for kind in ("onnx", "torch"):
                file = path / getattr(network, kind)
                if not file.is_file():
                    raise CardError(
                        f"{path / CARD_FILE}: field 'networks.{network.name}.{kind}' names "
                        f"{getattr(network, kind)!r}, which is not in the package"
                    )
        return cls(path=path, card=card, sha256=package_hash(path, card))

    def network(self, name: str) -> NetworkCard:
        try:
            return self.card.networks[name]
        except KeyError:
            raise ValueError(
                f"model {self.card.name!r} has no network {name!r}; it has {sorted(self.card.networks)}"
            ) from None

    def onnx_path(self, name: str) -> Path:
        return self.path / self.network(name).onnx

    def torch_path(self, name: str) -> Path:
        return self.path / self.network(name).torch


def package_hash(path: Path, card: ModelCard) -> str:
    """SHA-256 over the card and each network's ONNX file, in network-name order."""
    digest = hashlib.sha256()
    files = [CARD_FILE, *(card.networks[n].onnx for n in sorted(card.networks))]
    for name in files:
        digest.update(name.encode() + b"\0")
        with open(path / name, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def find_package(name_or_path: str | Path = DEFAULT_PACKAGE) -> ModelPackage:
    """Load a package given its folder, or its name under one of :func:`engines_dirs`."""
    candidate = Path(name_or_path)
    if candidate.is_dir():
        return ModelPackage.load(candidate)
    searched = engines_dirs()
    for folder in searched:
        if (folder / str(name_or_path)).is_dir():
            return ModelPackage.load(folder / str(name_or_path))
    raise ValueError(
        f"no model package {str(name_or_path)!r}: not a folder, and not found in "
        f"{', '.join(str(f) for f in searched)} (set {ENGINES_ENV} to add folders)"
    )
