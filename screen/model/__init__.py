"""The detector's model: network, model cards and packages, training and calibration."""

from screen.model.card import CardError, ModelCard, NetworkCard
from screen.model.package import ModelPackage, find_package

__all__ = ["CardError", "ModelCard", "ModelPackage", "NetworkCard", "find_package"]
