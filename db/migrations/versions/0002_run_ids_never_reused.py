"""Run ids are never reused: `runs` becomes AUTOINCREMENT on SQLite.

Without it SQLite hands a deleted run's id (the largest rowid) to the next run, so an old share
link would open another run. SQLite cannot add AUTOINCREMENT to a table, so the table is rebuilt
(copy, drop, rename) with every row, index and foreign key; the copy records the largest id in
`sqlite_sequence`, which from then on only grows. db.engine.migrate runs this with foreign keys off
and in one write transaction: dropping `runs` with them on would cascade into metrics and artifacts.
PostgreSQL needs nothing: its serial/identity sequences never reuse a value.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _rebuild_runs(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("runs", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
        pass


def upgrade() -> None:
    _rebuild_runs(True)


def downgrade() -> None:
    _rebuild_runs(False)
