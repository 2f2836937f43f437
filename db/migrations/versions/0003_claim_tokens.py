"""Claims own their runs: `runs.claim_token` and `runs.attempts`; artifact sizes are 64-bit.

`claim_token` (uuid4 hex, new at every claim) is what a job's writes and its final status must
match, so a child of an earlier claim can never write to a run that was re-queued or closed.
`attempts` counts the claims that ran, for the orphan policy (re-queue once, then fail). A run
that had started before this upgrade counts as one attempt. `artifacts.bytes` becomes BIGINT on
PostgreSQL (its INTEGER is 32-bit; a saved model can be over 2 GiB); SQLite's INTEGER is 64-bit
already, so nothing is rebuilt there.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("claim_token", sa.String(32)))
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
    op.execute("UPDATE runs SET attempts = 1 WHERE started_at IS NOT NULL")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("artifacts", "bytes", type_=sa.BigInteger)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("artifacts", "bytes", type_=sa.Integer)
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("attempts")
        batch.drop_column("claim_token")
