"""Coaching: dated goal check-ins, feedback on goals and check-ins, and when a learner last read their feedback.

``check_ins`` keeps every check-in on a goal (its status and note, dated), the
goal's history; feedback may now answer one (``feedback.check_in_id``) or the
goal itself. ``learners.feedback_seen_at`` lets the home page mark feedback
that arrived since the learner last looked. ``reminders`` records each message
``companion remind`` sent, so no one is written to twice about the same thing
within the quiet period.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "check_ins",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("learner_id", sa.Integer, sa.ForeignKey("learners.id"), nullable=False),
        sa.Column("activity_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_check_ins_learner_activity", "check_ins", ["learner_id", "activity_id"])
    op.add_column("feedback", sa.Column("check_in_id", sa.Integer, nullable=True))
    op.create_index("ix_feedback_check_in", "feedback", ["check_in_id"])
    op.add_column("learners", sa.Column("feedback_seen_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "reminders",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("recipient", sa.String(254), nullable=False),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_reminders_recipient_topic", "reminders", ["recipient", "topic"])
