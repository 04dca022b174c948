"""Decide which series are abdominal CTs worth screening, by rules kept in a readable file.

The rules are parsed and checked before the crawl starts, so a typo in a user's rules file
fails at once with the rule's name, not halfway through a sweep. Every rejection names the
rule that fired and says why in words a person understands.
"""

from __future__ import annotations

import math
import re
import statistics
import tomllib
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path

from screen.records import Decision, Series

DEFAULT_RULES = "default.toml"
TILT_TOLERANCE_DEG = 2.0

TEXT_FACTS = frozenset({
    "modality", "sop_class_uid", "image_type", "plane", "single_orientation",
    "unique_positions", "uniform_spacing", "kernel", "body_part", "series_description",
    "study_description", "protocol_name", "manufacturer", "transfer_syntax_uid",
})
NUMBER_FACTS = frozenset({
    "n_slices", "z_coverage_mm", "slice_thickness_mm", "slice_spacing_mm", "gantry_tilt_deg",
})
FACTS = TEXT_FACTS | NUMBER_FACTS
# Facts of how the slices sit in space, not of what the tags say.
GEOMETRY_FACTS = frozenset({
    "plane", "single_orientation", "unique_positions", "uniform_spacing", "n_slices",
    "z_coverage_mm", "slice_spacing_mm", "gantry_tilt_deg",
})


class Action(str, Enum):
    REJECT = "reject"
    CONFIRM = "confirm"


class Missing(str, Enum):
    PASS = "pass"
    REJECT = "reject"
    CONFIRM = "confirm"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    facts: tuple[str, ...]
    reason: str
    allow: tuple[re.Pattern[str], ...] = ()
    reject: tuple[re.Pattern[str], ...] = ()
    unless: tuple[re.Pattern[str], ...] = ()
    min: float | None = None
    max: float | None = None
    if_missing: Missing = Missing.PASS
    action: Action = Action.REJECT

    def __post_init__(self) -> None:
        unknown = [f for f in self.facts if f not in FACTS]
        if not self.facts or unknown:
            raise ValueError(f"rule '{self.name}': unknown facts {unknown or '(none given)'}; "
                             f"known facts are {', '.join(sorted(FACTS))}")
        numeric = any(f in NUMBER_FACTS for f in self.facts)
        if numeric and (self.allow or self.reject or self.unless):
            raise ValueError(f"rule '{self.name}': numeric facts take min/max, not patterns")
        if not numeric and (self.min is not None or self.max is not None):
            raise ValueError(f"rule '{self.name}': min/max apply to numeric facts only")
        if not (self.allow or self.reject or self.min is not None or self.max is not None):
            raise ValueError(f"rule '{self.name}' has nothing to check: give allow, reject, "
                             "min or max")
        if self.unless and not self.reject:
            raise ValueError(f"rule '{self.name}': 'unless' only qualifies 'reject'")

    @property
    def geometric(self) -> bool:
        """Whether the rule judges the slices' geometry alone."""
        return all(f in GEOMETRY_FACTS for f in self.facts)


@dataclass(frozen=True, slots=True)
class Rules:
    rules: tuple[Rule, ...]
    source: str

    def decide(self, series: Series) -> tuple[Decision, tuple[str, ...]]:
        """The decision for a series, and why its image content must confirm it (if it must)."""
        values = facts(series)
        notes: list[str] = []
        for rule in self.rules:
            verdict, shown = _apply(rule, values)
            if verdict is None:
                continue
            message = _format(rule, shown)
            if verdict == Action.REJECT and rule.action == Action.REJECT:
                return Decision(False, rule.name, message), tuple(notes)
            notes.append(f"{rule.name}: {message}")
        return Decision(True), tuple(notes)

    def abdominal_by_tags(self, series: Series, decision: Decision) -> bool:
        """Whether ``decision`` rejected the series for its geometry although every rule on
        its tags says yes, one naming the abdomen among them: an abdominal CT that is not
        screened, which a summary must show as such."""
        rule = next((r for r in self.rules if r.name == decision.rule), None)
        if decision.eligible or rule is None or not rule.geometric:
            return False
        values = facts(series)
        return all(_apply(r, values)[0] is None for r in self.rules if not r.geometric)


def load_rules(path: Path | None = None) -> Rules:
    """The rules in ``path``, or the defaults shipped with the package, checked in full."""
    if path is None:
        text = resources.files("screen.rules").joinpath(DEFAULT_RULES).read_text("utf-8")
        source = f"built-in {DEFAULT_RULES}"
    else:
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise ValueError(f"rules file {path} cannot be read: {exc.strerror}") from exc
        source = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"rules file {source} is not valid TOML: {exc}") from exc
    entries = data.get("rule")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"rules file {source} has no [[rule]] tables")
    return Rules(tuple(_parse_rule(entry, source) for entry in entries), source)


def _parse_rule(entry: dict, source: str) -> Rule:
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"rules file {source}: every rule needs a name")
    known = {"name", "facts", "reason", "allow", "reject", "unless", "min", "max",
             "if_missing", "action"}
    extra = set(entry) - known
    if extra:
        raise ValueError(f"rule '{name}' in {source}: unknown keys {sorted(extra)}")
    if not isinstance(entry.get("reason"), str):
        raise ValueError(f"rule '{name}' in {source}: needs a reason")
    try:
        return Rule(
            name=name,
            facts=tuple(entry.get("facts", ())),
            reason=entry["reason"],
            allow=_patterns(name, entry.get("allow", ())),
            reject=_patterns(name, entry.get("reject", ())),
            unless=_patterns(name, entry.get("unless", ())),
            min=_number(name, entry.get("min")),
            max=_number(name, entry.get("max")),
            if_missing=Missing(entry.get("if_missing", "pass")),
            action=Action(entry.get("action", "reject")),
        )
    except ValueError as exc:
        raise ValueError(f"{exc} (in {source})") from None


def _patterns(rule: str, raw: object) -> tuple[re.Pattern[str], ...]:
    if not isinstance(raw, list | tuple) or not all(isinstance(p, str) for p in raw):
        raise ValueError(f"rule '{rule}': patterns must be a list of strings")
    compiled = []
    for pattern in raw:
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            raise ValueError(f"rule '{rule}': bad pattern {pattern!r}: {exc}") from None
    return tuple(compiled)


def _number(rule: str, raw: object) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"rule '{rule}': min/max must be numbers, got {raw!r}")
    return float(raw)


def facts(series: Series) -> dict[str, tuple[str, ...] | float | None]:
    """What the rules can look at, computed once per series from its headers and geometry."""
    g = series.geometry
    first = series.first
    thicknesses = [i.slice_thickness for i in series.instances if i.slice_thickness]
    image_type = tuple(dict.fromkeys(v for i in series.instances for v in i.image_type))
    return {
        "modality": (first.modality,),
        "sop_class_uid": (first.sop_class_uid,),
        "image_type": image_type,
        "plane": (plane_with_tilt(series),),
        "single_orientation": (_yes(g.single_orientation),),
        "unique_positions": (_yes(g.unique_positions),),
        "uniform_spacing": (_yes(g.uniform_spacing),),
        "kernel": (first.convolution_kernel,),
        "body_part": (first.body_part_examined,),
        "series_description": (first.series_description,),
        "study_description": (first.study_description,),
        "protocol_name": (first.protocol_name,),
        "manufacturer": (first.manufacturer,),
        "transfer_syntax_uid": (first.transfer_syntax_uid,),
        "n_slices": float(series.n_frames),
        "z_coverage_mm": g.z_coverage_mm,
        "slice_thickness_mm": statistics.median(thicknesses) if thicknesses else g.slice_spacing_mm,
        "slice_spacing_mm": g.slice_spacing_mm,
        "gantry_tilt_deg": g.gantry_tilt_deg,
    }


def plane_with_tilt(series: Series) -> str:
    """The series' plane, counting an axial acquisition tilted by the gantry as axial."""
    g = series.geometry
    tilt = abs(g.gantry_tilt_deg or 0.0)
    if g.orientation == "oblique" and tilt and g.obliquity_deg is not None:
        if abs(g.obliquity_deg - tilt) <= TILT_TOLERANCE_DEG:
            return "axial"
    return g.orientation


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _apply(rule: Rule, values: dict) -> tuple[Action | None, str]:
    """(REJECT, value shown) when the rule says no, (None, '') when it passes."""
    collected = [values[f] for f in rule.facts]
    if any(f in NUMBER_FACTS for f in rule.facts):
        numbers = [v for v in collected if isinstance(v, float) and math.isfinite(v)]
        if not numbers:
            return _missing(rule)
        for number in numbers:
            if (rule.min is not None and number < rule.min) or (
                rule.max is not None and number > rule.max
            ):
                return Action.REJECT, f"{number:g}"
        return None, ""
    texts = [t for group in collected for t in group if t]
    if not texts:
        return _missing(rule)
    if rule.reject:
        hit = next((t for t in texts if any(p.search(t) for p in rule.reject)), None)
        if hit is not None and not any(p.search(t) for t in texts for p in rule.unless):
            return Action.REJECT, hit
    if rule.allow and not any(p.search(t) for t in texts for p in rule.allow):
        return Action.REJECT, " / ".join(texts)
    return None, ""


def _missing(rule: Rule) -> tuple[Action | None, str]:
    if rule.if_missing == Missing.PASS:
        return None, ""
    verdict = Action.REJECT if rule.if_missing == Missing.REJECT else Action.CONFIRM
    return verdict, "not given"


def _format(rule: Rule, shown: str) -> str:
    return rule.reason.format(value=shown, min=_g(rule.min), max=_g(rule.max))


def _g(x: float | None) -> str:
    return "" if x is None else f"{x:g}"
