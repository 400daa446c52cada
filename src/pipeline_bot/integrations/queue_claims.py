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

The due rows are walked in order along a partial index of the unfinished ones, so a claim costs
the same however many done rows the retention keeps. A claim's commit does not wait for the
disk (a claim lost to a crash of the database only makes its row claimable again, as a lease
that ran out does); a finish does.
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
) RETURNS SETOF app_deliveries LANGUAGE plpgsql VOLATILE
-- walk the unfinished rows in order along their index and stop at the first claimable ones;
-- a planner with stale statistics (a queue fills faster than they are gathered) would rather
-- sort every unfinished row, checking each one's lane first
SET enable_sort = off SET enable_bitmapscan = off AS $$
DECLARE
    now_ double precision := coalesce(p_now, extract(epoch FROM clock_timestamp()));
    cand record;
BEGIN
    -- a claim lost to a crash of the database only makes the row claimable again, as a lease
    -- that ran out does: no need to wait for the log to reach the disk
    PERFORM set_config('synchronous_commit', 'off', true);
    -- candidates: due, first of their lane, the lane not held (as this snapshot sees it)
    FOR cand IN
        SELECT d.id, d.lane, d.received_at FROM app_deliveries d
        WHERE d.status IN ('pending', 'running')
          AND ((d.status = 'pending' AND d.next_attempt_at <= now_)
               OR (d.status = 'running' AND coalesce(d.lease_until, 0) < now_))
          AND (d.lane IS NULL OR NOT EXISTS (
                SELECT 1 FROM app_deliveries o
                WHERE o.lane = d.lane AND o.status IN ('pending', 'running') AND o.id <> d.id
                  AND ((o.status = 'running' AND coalesce(o.lease_until, 0) >= now_)
                       OR ((o.received_at, o.id) < (d.received_at, d.id)
                           AND ((o.status = 'pending' AND o.next_attempt_at <= now_)
                                OR (o.status = 'running' AND coalesce(o.lease_until, 0) < now_))))))
        ORDER BY d.received_at, d.id
        LIMIT 20
    LOOP
        IF cand.lane IS NOT NULL THEN
            -- one claimer per lane at a time; another one claiming in it: pass it over
            CONTINUE WHEN NOT pg_try_advisory_xact_lock(1885954913, hashtext(cand.lane));
            -- a statement of its own: its snapshot sees every claim committed before the lock
            CONTINUE WHEN EXISTS (
                SELECT 1 FROM app_deliveries o
                WHERE o.lane = cand.lane AND o.status IN ('pending', 'running') AND o.id <> cand.id
                  AND ((o.status = 'running' AND coalesce(o.lease_until, 0) >= now_)
                       OR ((o.received_at, o.id) < (cand.received_at, cand.id)
                           AND ((o.status = 'pending' AND o.next_attempt_at <= now_)
                                OR (o.status = 'running' AND coalesce(o.lease_until, 0) < now_)))));
        END IF;
        -- the row itself, unless another replica is claiming it, and still due
        PERFORM 1 FROM app_deliveries d
        WHERE d.id = cand.id
          AND ((d.status = 'pending' AND d.next_attempt_at <= now_)
               OR (d.status = 'running' AND coalesce(d.lease_until, 0) < now_))
        FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
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

# the unfinished rows, in order and by lane: what claims read, however many done rows are kept
INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_app_deliveries_unfinished ON app_deliveries "
    "(received_at, id) WHERE status IN ('pending', 'running')",
    "CREATE INDEX IF NOT EXISTS ix_app_deliveries_lane_unfinished ON app_deliveries "
    "(lane, received_at, id) WHERE status IN ('pending', 'running')",
)

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
    for index in INDEXES:
        conn.execute(text(index))
    conn.execute(text(CLAIM_FUNCTION))


def migrate_sqlite(conn: Connection) -> None:
    """The lease columns on a table an older version made (one process serves the file)."""
    present = {row[1] for row in conn.execute(text("PRAGMA table_info(app_deliveries)"))}
    for name, kind in COLUMNS:
        if name not in present:
            sqlite_kind = "REAL" if kind.startswith("DOUBLE") else "VARCHAR(160)"
            conn.execute(text(f"ALTER TABLE app_deliveries ADD COLUMN {name} {sqlite_kind}"))
