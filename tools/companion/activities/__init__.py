"""The widgets a session notebook is made of.

A session notebook starts with::

    from companion.activities import *
    Workbook("s1")

and then declares each activity in its own code cell, with literal arguments
(the catalog reads them without running the notebook)::

    Reflection("s1-why", prompt="What is your why for leading with racial equity?",
               competency="racial-equity-mindset")

Every activity saves as the learner works (an append-only event plus the
latest response), restores what was saved when the page opens again, and
renders learner text as text, never as HTML. Controls carry visible labels and
work from the keyboard. When the learner cannot be identified (an invalid or
expired link), the Workbook says why and no activity renders or records.

The package has one module per part: ``page`` (status lines, times), ``workbook``,
``base`` (saving and restoring), ``writing`` (Reflection, Goal), ``questions``
(Choice, Sort), ``scenario``, ``ratings`` (SelfAssessment) and ``closing`` (SessionComplete).
"""

from __future__ import annotations

from ..identity import page_query as _query_string  # noqa: F401  (the home page and dashboard read the link the same way)
from .closing import SessionComplete
from .page import fingerprint, local_time, signed_in_html  # noqa: F401
from .questions import Choice, Sort
from .ratings import SelfAssessment
from .scenario import Scenario
from .workbook import Workbook
from .writing import Goal, Reflection

__all__ = ["Workbook", "Reflection", "Choice", "Sort", "Scenario", "SelfAssessment", "Goal", "SessionComplete"]
