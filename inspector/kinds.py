"""Defect kinds: what QA may call a confirmed defect, and the rules a station's list follows."""

from __future__ import annotations

# The defect kinds QA picks from at a station that has no list of its own: kinds of damage any
# machined part shows, so the picker is of use before anyone sets a station's list.
DEFAULT_KINDS = ("scratch", "dent", "crack", "deformed", "contamination", "other")
KIND_LENGTH = 100
MAX_KINDS = 9  # the QA page picks them with the keys 1-9


def clean_kind(kind: str) -> str:
    """A defect kind as stored: stripped, not empty, at most KIND_LENGTH characters."""
    kind = kind.strip()
    if not kind:
        raise ValueError("a defect kind cannot be empty")
    if len(kind) > KIND_LENGTH:
        raise ValueError(f"a defect kind has at most {KIND_LENGTH} characters, got {len(kind)}: {kind[:40]!r}...")
    return kind


def kind_list(kinds: list[str]) -> list[str]:
    """A station's list of kinds as stored: each `clean_kind`, none twice, at most MAX_KINDS."""
    kinds = [clean_kind(kind) for kind in kinds]
    twice = sorted({kind for kind in kinds if kinds.count(kind) > 1})
    if twice:
        raise ValueError(f"kinds named twice: {', '.join(twice)}")
    if len(kinds) > MAX_KINDS:
        raise ValueError(f"at most {MAX_KINDS} kinds (the QA page picks them with the keys 1-{MAX_KINDS}), "
                         f"got {len(kinds)}")
    return kinds
