"""Coded concepts the SR and SEG use, kept as data in one place.

SNOMED CT and DICOM codes where the standard has one. The score has no standard concept that
means what it means (a calibrated probability that the series shows a pancreatic lesion, of
any kind), so it gets a private code in the ``99SCREEN`` scheme rather than borrowing one
that says something else (DCM 111047 "Probability of cancer" would).
"""

from __future__ import annotations

from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes

from screen.records import Location

PRIVATE_SCHEME = "99SCREEN"

PANCREAS = codes.SCT.Pancreas
LESION = codes.SCT.Lesion
ANATOMICAL_STRUCTURE = codes.SCT.AnatomicalStructure
ABNORMAL_STRUCTURE = codes.SCT.MorphologicallyAbnormalStructure
ABDOMEN = codes.SCT.Abdomen
DIAMETER = codes.SCT.Diameter
MILLIMETRE = codes.UCUM.Millimeter
NO_UNITS = codes.UCUM.NoUnits
REPORT_TITLE = codes.cid7021.ImagingMeasurementReport
PROCEDURE = codes.LN.CTUnspecifiedBodyRegion

SITE: dict[Location, CodedConcept] = {
    Location.HEAD: CodedConcept("64163001", "SCT", "Head of pancreas"),
    Location.BODY: CodedConcept("40133006", "SCT", "Body of pancreas"),
    Location.TAIL: CodedConcept("73239005", "SCT", "Tail of pancreas"),
}

SCORE = CodedConcept("LESION-SCORE", PRIVATE_SCHEME, "Pancreatic lesion suspicion score")
# The algorithm family of the segmentation: CID 7162 "Artificial Intelligence".
NETWORK_FAMILY = CodedConcept("123110", "DCM", "Artificial Intelligence")

# Recommended display colours (sRGB; the SEG stores them as CIELab): the pancreas in the
# colour anatomy viewers commonly give it (3D Slicer's generic anatomy table), the lesion in
# red so that it stands out against the gland.
PANCREAS_RGB = (249, 180, 111)
LESION_RGB = (255, 0, 0)
