"""The facilitator dashboard: who is where, what learners shared, feedback on it, and coaching.

One concept a module, read in this order:

- :mod:`.figures` (no widgets): completion by session and cohort, the series
  rate, who has not started or has stalled (:func:`figures`); every learner's
  progress for the exports (:func:`everyone_progress`); one learner's record as
  a facilitator may see it (:func:`learner_record`).
- :mod:`.access`: who may open it (:func:`facilitator`) and the personal link
  ``companion dashboard`` prints (:func:`facilitator_link`).
- :mod:`.page`: :class:`Dashboard`, the Voila app served as ``/dashboard``
  (``voila/render/dashboard.ipynb``, a one-cell notebook ``companion release``
  writes), with an accessible bar chart, the lists, a learner's record and a
  feedback box under each shared reflection; and the HTML of its tables.
- :mod:`.coaching`, :mod:`.cohort` and :mod:`.record`: the coaching figures
  (the queue of what waits for feedback, how long it waited, how self-ratings
  moved across a cohort, each session's usefulness ratings), and the learner
  record's goals, ratings and shared reflections with their feedback boxes.

Anyone else gets a message (``role="alert"``) and the page reads no data.
Everything a learner or a roster wrote is escaped before it becomes HTML.

Example::

    >>> from companion.dashboard import figures
    >>> numbers = figures(store, catalog)
    >>> f"{numbers.overall.series_rate:.0%} of supervisors completed the series"
    '89% of supervisors completed the series'
"""

from __future__ import annotations

from .access import DASHBOARD_PAGE, facilitator, facilitator_link
from .figures import (
    LISTED, NO_COHORT, STALLED_DAYS, Figures, Group, LearnerRecord, RecordItem, SessionFigures, Straggler, current_progress,
    everyone_progress, figures, learner_record,
)
from .page import Dashboard, chart_html, cohorts_html, series_html, stragglers_html

# What other modules, the tests and the dashboard notebook import from companion.dashboard.
__all__ = [
    "DASHBOARD_PAGE", "LISTED", "NO_COHORT", "STALLED_DAYS", "Dashboard", "Figures", "Group", "LearnerRecord", "RecordItem",
    "SessionFigures", "Straggler", "chart_html", "cohorts_html", "current_progress", "everyone_progress", "facilitator",
    "facilitator_link", "figures", "learner_record", "series_html", "stragglers_html",
]
