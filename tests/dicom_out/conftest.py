"""The review tests' cases (a real series and a detector-shaped Analysis) serve here too."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "review_cases"
_spec = importlib.util.spec_from_file_location(
    _NAME, Path(__file__).resolve().parents[1] / "review" / "conftest.py")
if _spec is None or _spec.loader is None:
    raise ImportError("tests/review/conftest.py, which builds the cases, is missing")
_cases = importlib.util.module_from_spec(_spec)
sys.modules[_NAME] = _cases  # dataclasses look their module up while the class is built
_spec.loader.exec_module(_cases)

case_archive = _cases.case_archive
lesion_case = _cases.lesion_case
clean_case = _cases.clean_case
