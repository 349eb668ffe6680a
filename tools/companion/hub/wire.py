"""What the hub service and a learner's page send each other: the store's answers as JSON, and back.

Only the kinds of answer a learner's page reads travel: a :class:`Response`,
:class:`Feedback`, a :class:`CheckIn`, a :class:`Learner`, lists and dicts of
them, and dates as ISO 8601 text.

Example::

    >>> from companion.hub.wire import dump, load
    >>> load(dump({"s1-why": None, "n": [1, 2]}))
    {'s1-why': None, 'n': [1, 2]}
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from ..store import CheckIn, Feedback, Learner, Response

KINDS = {cls.__name__: cls for cls in (Response, Feedback, CheckIn, Learner)}
DATES = {"at", "updated_at", "last_active"}  # the fields of those kinds that hold a date


def encode(value: Any) -> Any:
    """``value`` as plain JSON types; a store answer carries its kind in ``"~kind"``."""
    if dataclasses.is_dataclass(value) and type(value).__name__ in KINDS:
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {"~kind": type(value).__name__, **{k: v.isoformat() if isinstance(v, datetime) else v for k, v in fields.items()}}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def decode(value: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(value, dict):
        kind = KINDS.get(value.get("~kind", ""))
        if kind is not None:
            fields = {k: (datetime.fromisoformat(v) if k in DATES and isinstance(v, str) else v) for k, v in value.items() if k != "~kind"}
            return kind(**fields)
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def dump(value: Any) -> str:
    return json.dumps(encode(value), ensure_ascii=False)


def load(text: str | bytes) -> Any:
    return decode(json.loads(text))
