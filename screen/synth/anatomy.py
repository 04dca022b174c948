"""The anatomy a phantom is drawn from: organ codes and the contrast phases.

``ORGAN_LABELS`` is the table of organ codes written to ``Phantom.organs`` (see
``screen.synth.phantom``); ``CODE`` looks a code up by name.
"""

from __future__ import annotations

from enum import Enum

Vec3 = tuple[float, float, float]

ORGAN_LABELS: dict[int, str] = {
    0: "air", 1: "subcutaneous_fat", 2: "muscle", 3: "visceral_fat", 4: "liver",
    5: "gallbladder", 6: "spleen", 7: "kidney_cortex", 8: "kidney_medulla", 9: "stomach_wall",
    10: "bowel_wall", 11: "luminal_fluid", 12: "luminal_gas", 13: "oral_contrast",
    14: "artery", 15: "ivc", 16: "portal_vein", 17: "cortical_bone", 18: "cancellous_bone",
    19: "spinal_canal", 20: "lung", 21: "pancreas_head", 22: "pancreas_body",
    23: "pancreas_tail", 24: "pancreatic_duct", 25: "lesion", 26: "heart", 27: "disc",
}
CODE = {name: code for code, name in ORGAN_LABELS.items()}
PANCREAS_CODES = (21, 22, 23, 24, 25)
LESION_CODE = 25


class Phase(str, Enum):
    """Contrast phase of the acquisition: organs and vessels enhance differently."""

    NON_CONTRAST = "non_contrast"
    ARTERIAL = "arterial"
    PORTAL_VENOUS = "portal_venous"


PANCREAS_SHAPES = ("normal", "atrophic", "bulky", "lobulated")
