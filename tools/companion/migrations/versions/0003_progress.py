"""Progress per learner and session, and when each learner was last active, kept as learners save.

The facilitator's figures read these instead of every response and event, so
the dashboard stays fast with a hundred thousand learners. Beside the
per-session rows, each learner's row holds how many sessions they completed
and whether they started any, so the figures read one row a learner. ``last_active`` is
filled from the events already saved. ``progress`` depends on which activities
the notebooks require, which a migration cannot know: it starts empty, and the
first dashboard builds it (``Store.rebuild_progress``).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "progress",
        sa.Column("learner_id", sa.Integer, sa.ForeignKey("learners.id"), primary_key=True),
        sa.Column("session_id", sa.String(32), primary_key=True),
        sa.Column("done", sa.Integer, nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "store_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.add_column("learners", sa.Column("last_active", sa.DateTime(timezone=True), nullable=True))
    op.add_column("learners", sa.Column("sessions_completed", sa.Integer, nullable=False, server_default="0"))
    op.add_column("learners", sa.Column("started", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ix_learners_last_active", "learners", ["last_active"])
    op.execute("UPDATE learners SET last_active = (SELECT MAX(events.at) FROM events WHERE events.learner_id = learners.id)")
