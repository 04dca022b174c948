"""The package format below detection: network, model cards and packages, and their export."""

from screen.model.card import CardError, ModelCard, NetworkCard
from screen.model.package import ModelPackage, find_package

__all__ = ["CardError", "ModelCard", "ModelPackage", "NetworkCard", "find_package"]
