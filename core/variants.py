"""A/B variant assignment: deterministic by recipient, proportional to weight.

The same customer always lands in the same variant of a campaign, whether it
is assigned in SQL during selection or in Python when added by hand: both hash
``"<campaign id>:<contact key>"`` the same way (see ``core.db.stable_bucket``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, case, literal

from core.db import stable_bucket, stable_bucket_py


def _bounds(variants: Sequence[dict[str, Any]]) -> tuple[list[tuple[int, str]], int]:
    upper, total = [], 0
    for v in variants:
        total += int(v.get("weight", 1))
        upper.append((total, str(v["name"])))
    return upper, total


def assignment_key(campaign_id: uuid.UUID, contact_key: str) -> str:
    return f"{campaign_id}:{contact_key}"


def assign_variant(variants: Sequence[dict[str, Any]], campaign_id: uuid.UUID, contact_key: str) -> str | None:
    """The variant a customer gets in a campaign (``None`` without variants)."""
    if not variants:
        return None
    upper, total = _bounds(variants)
    slot = stable_bucket_py(assignment_key(campaign_id, contact_key)) % total
    return next(name for bound, name in upper if slot < bound)


def variant_sql(variants: Sequence[dict[str, Any]], campaign_id: uuid.UUID,
                contact_key: ColumnElement[str]) -> ColumnElement[Any]:
    """The same assignment as a SQL expression over a contact-key column."""
    if not variants:
        return literal(None)
    upper, total = _bounds(variants)
    slot = stable_bucket(literal(f"{campaign_id}:") + contact_key) % total
    return case(*[(slot < bound, literal(name)) for bound, name in upper[:-1]], else_=literal(upper[-1][1]))
