"""Indexes on what was shared, for the facilitator's feedback queue.

The queue (``Store.waiting_for_feedback``) lists shared reflections with no
feedback yet, each from when it was first shared. It read every response to
find the shared ones and every event to find when each was shared: about 2 s
for a store of 100,000 learners with 2,000 items waiting. Two partial indexes
hold only the shared rows (a few percent of responses; one event per share),
so the queue reads those alone. A save writes to them only when it shares: a
save that does not share changes no indexed column.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    shared_events = sa.text("verb = 'shared'")
    op.create_index("ix_events_shared", "events", ["learner_id", "activity_id", "at"], sqlite_where=shared_events, postgresql_where=shared_events)
    # Written as the queue's query writes it (``shared IS 1`` on SQLite, ``shared IS true`` on PostgreSQL),
    # so that each database sees the query's condition is the index's.
    op.create_index("ix_responses_shared", "responses", ["learner_id", "activity_id"],
                    sqlite_where=sa.text("shared IS 1"), postgresql_where=sa.text("shared IS true"))

