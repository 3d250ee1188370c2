"""devices: standby, the SoftGate of a pair that carries traffic only while its partner
is down

Revision ID: 5d1c0e7a9b42
Revises: 3a56a99dd056
Create Date: 2026-11-21 14:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '5d1c0e7a9b42'
down_revision = '3a56a99dd056'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('standby', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('standby')
