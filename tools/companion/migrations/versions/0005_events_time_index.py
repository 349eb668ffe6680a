"""No index on when each event happened.

No read looks events up by their time (they are read by learner, or in the
order they were saved), yet every save had to write the index's page: on
SQLite, one page in four that a save writes, inside the write lock. Dropping it
changes no row.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.drop_index("ix_events_at", table_name="events")
