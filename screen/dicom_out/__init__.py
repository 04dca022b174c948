"""DICOM objects for the PACS: a TID 1500 SR of the finding and a SEG of pancreas and lesion."""

from screen.dicom_out.seg import source_frames, write_seg
from screen.dicom_out.sr import write_sr

__all__ = ["source_frames", "write_seg", "write_sr"]
