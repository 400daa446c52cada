"""How replicas of the App share the delivery queue on PostgreSQL: claims as leases.

A claim is a lease: the row says who holds it (`claimed_by`) and until when (`lease_until`, on
the database's clock, so replicas on machines whose clocks differ agree). The holder renews it
while it works; a replica that dies stops renewing, and once the lease has run out the row is
due again and any replica takes it (its attempts go up by one, as after a restart).

A delivery is due when it is pending and its next attempt has come, or running under a lease
that ran out. Of a lane's deliveries (one pull request's, one repository's pushes) only the
oldest due one may be claimed, and none while another of the lane is held under a live lease.

On PostgreSQL `pipeline_bot_claim_delivery()` decides that in one round trip: it walks the due
rows oldest first with `FOR UPDATE SKIP LOCKED` (rows another replica is claiming are passed
over, nobody waits), takes a transaction-scoped advisory lock on the row's lane (try, never
wait: a lane another replica is claiming in is passed over too), and only then looks at the
lane's other rows, in a statement of its own and so in a snapshot taken after the lock: two
replicas never both see a lane free. SQLite, which one process serves, claims with a
conditional update instead (`DeliveryStore.claim`).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

# advisory locks: (LOCK_SPACE, 0) guards the schema's migration, (LOCK_SPACE, hash) a lane
# (the claim function spells the number out)
LOCK_SPACE = 1885954913

COLUMNS = (
    ("claimed_by", "VARCHAR(160)"),
    ("lease_until", "DOUBLE PRECISION"),
)

CLAIM_FUNCTION = """
CREATE OR REPLACE FUNCTION pipeline_bot_claim_delivery(
    p_owner text, p_lease double precision, p_now double precision DEFAULT NULL
) RETURNS SETOF app_deliveries LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_ double precision := coalesce(p_now, extract(epoch FROM clock_timestamp()));
    cand record;
BEGIN
    FOR cand IN
        SELECT d.id, d.lane, d.received_at FROM app_deliveries d
        WHERE (d.status = 'pending' AND d.next_attempt_at <= now_)
           OR (d.status = 'running' AND coalesce(d.lease_until, 0) < now_)
        ORDER BY d.received_at, d.id
        LIMIT 200
        FOR UPDATE SKIP LOCKED
    LOOP
        IF cand.lane IS NOT NULL THEN
            CONTINUE WHEN NOT pg_try_advisory_xact_lock(1885954913, hashtext(cand.lane));
            -- a statement of its own: its snapshot sees every claim made before the lock
            CONTINUE WHEN EXISTS (
                SELECT 1 FROM app_deliveries o
                WHERE o.lane = cand.lane AND o.id <> cand.id AND (
                    (o.status = 'running' AND coalesce(o.lease_until, 0) >= now_)
                    OR ((o.received_at, o.id) < (cand.received_at, cand.id) AND (
                        (o.status = 'pending' AND o.next_attempt_at <= now_)
                        OR (o.status = 'running' AND coalesce(o.lease_until, 0) < now_)
                    ))
                )
            );
        END IF;
        RETURN QUERY
            UPDATE app_deliveries
            SET status = 'running', attempts = attempts + 1, claimed_by = p_owner,
                lease_until = now_ + p_lease, updated_at = now_
            WHERE id = cand.id
            RETURNING *;
        RETURN;
    END LOOP;
END
$$
"""

RENEW = text(
    "UPDATE app_deliveries SET lease_until = extract(epoch FROM clock_timestamp()) + :lease "
    "WHERE claimed_by = :owner AND status = 'running' AND id = ANY(:ids) RETURNING id"
)


def migrate_postgresql(conn: Connection) -> None:
    """The lease columns on a table an older version made, and the claim function; under an
    advisory lock, since replicas that start together would otherwise race to create them."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:space, 0)"), {"space": LOCK_SPACE})
    for name, kind in COLUMNS:
        conn.execute(text(f"ALTER TABLE app_deliveries ADD COLUMN IF NOT EXISTS {name} {kind}"))
    conn.execute(text(CLAIM_FUNCTION))


def migrate_sqlite(conn: Connection) -> None:
    """The lease columns on a table an older version made (one process serves the file)."""
    present = {row[1] for row in conn.execute(text("PRAGMA table_info(app_deliveries)"))}
    for name, kind in COLUMNS:
        if name not in present:
            sqlite_kind = "REAL" if kind.startswith("DOUBLE") else "VARCHAR(160)"
            conn.execute(text(f"ALTER TABLE app_deliveries ADD COLUMN {name} {sqlite_kind}"))
