"""firewall: ingress rules of ROUTED networks carry no public IP

A ROUTED network has no NAT: its ingress rules (CloudStack's routing firewall rules)
name guest addresses in dest_cidrs instead of a public IP. The check constraint now
only keeps public IPs off egress rules; the network's mode decides the rest.

Revision ID: 3f6b2d9c41e7
Revises: a75d66a7825d
Create Date: 2026-11-21 12:00:30.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '3f6b2d9c41e7'
down_revision = 'a75d66a7825d'
branch_labels = None
depends_on = None

CONSTRAINT = 'ck_firewall_rules_public_ip'
OLD = "(direction = 'ingress') = (public_ip_id IS NOT NULL)"
NEW = "direction = 'ingress' OR public_ip_id IS NULL"


def upgrade() -> None:
    with op.batch_alter_table('firewall_rules', schema=None) as batch_op:
        batch_op.drop_constraint(op.f(CONSTRAINT), type_='check')
        batch_op.create_check_constraint(op.f(CONSTRAINT), NEW)


def downgrade() -> None:
    # The old schema cannot hold a ROUTED network's ingress rules: they go (CloudStack
    # sends a network's whole firewall again with its next apply-fw-rules).
    op.execute(sa.text("DELETE FROM firewall_rules"
                       " WHERE direction = 'ingress' AND public_ip_id IS NULL"))
    with op.batch_alter_table('firewall_rules', schema=None) as batch_op:
        batch_op.drop_constraint(op.f(CONSTRAINT), type_='check')
        batch_op.create_check_constraint(op.f(CONSTRAINT), OLD)
