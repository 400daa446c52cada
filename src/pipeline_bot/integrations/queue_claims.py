"""How replicas of the App share the delivery queue on PostgreSQL: claims as leases.

A claim is a lease: the row says who holds it (`claimed_by`) and until when (`lease_until`, on
the database's clock, so replicas on machines whose clocks differ agree). The holder renews it
while it works; a replica that dies stops renewing, and once the lease has run out the row is
due again and any replica takes it (its attempts go up by one, as after a restart).

A delivery is due when it is pending and its next attempt has come, or running under a lease
that ran out. Of a lane's deliveries (one pull request's, one repository's pushes) only the
oldest due one may be claimed, and none while another of the lane is held under a live lease.

On PostgreSQL `pipeline_bot_claim_deliveries()` claims a batch in one round trip and one
transaction. It reads the candidates without locks (due, the oldest due one of their lane, the
lane not held: so never two of one lane), oldest first along a partial index of the unfinished
rows; takes a transaction-scoped advisory lock on each one's lane, in order, as many as the batch
needs (try, never wait: a lane another replica is claiming in is passed over); and only then, in
a statement of its own and so in a snapshot taken after the locks, looks at each lane again and
claims the rows with `FOR UPDATE SKIP LOCKED` (a row another replica is claiming is passed over,
nobody waits): two replicas never both see a lane free. Rows are looked up by primary key one by
one, whatever the planner's statistics say (they lag while a queue fills). Whether a lane is
held is read from a small partial index of the running rows. `pipeline_bot_claim_delivery()`,
the one-at-a-time claim of earlier versions, is that with a batch of one, for replicas not yet
upgraded. SQLite, which one process serves, claims with conditional updates instead
(`DeliveryStore.claim_many`).

Outcomes are written in batches too (`FINISH_MANY`): one statement, so one transaction and one
durable commit for all of a worker's finished deliveries, each row checked against the claim it
was worked under (a row whose lease ran out and was taken by another replica is left alone,
the others are written).

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

# the row's lane is free for it: no other row of the lane held under a live lease (along the
# small index of the running rows), and no older row of the lane due (along the lane's index,
# from the row back: usually nothing)
_LANE_FREE = """(
    NOT EXISTS (
        SELECT 1 FROM app_deliveries o
        WHERE o.lane = {row}.lane AND o.status = 'running' AND o.id <> {row}.id
          AND coalesce(o.lease_until, 0) >= now_)
    AND NOT EXISTS (
        SELECT 1 FROM app_deliveries o
        WHERE o.lane = {row}.lane AND o.status IN ('pending', 'running')
          AND (o.received_at, o.id) < ({row}.received_at, {row}.id)
          AND ((o.status = 'pending' AND o.next_attempt_at <= now_)
               OR (o.status = 'running' AND coalesce(o.lease_until, 0) < now_))))"""
_DUE = """((d.status = 'pending' AND d.next_attempt_at <= now_)
               OR (d.status = 'running' AND coalesce(d.lease_until, 0) < now_))"""

# built of this module's constants only
CLAIM_FUNCTION = f"""
CREATE OR REPLACE FUNCTION pipeline_bot_claim_deliveries(
    p_owner text, p_lease double precision, p_limit integer, p_now double precision DEFAULT NULL
) RETURNS SETOF app_deliveries LANGUAGE plpgsql VOLATILE
-- walk the unfinished rows in order along their index and stop at the first claimable ones;
-- a planner with stale statistics (a queue fills faster than they are gathered) would rather
-- sort every unfinished row, checking each one's lane first
SET enable_sort = off SET enable_bitmapscan = off AS $$
DECLARE
    now_ double precision := coalesce(p_now, extract(epoch FROM clock_timestamp()));
    ids text[];
    lanes text[];
    mine text[];
    tried integer := 0;
    reached integer;
    taken integer := 0;
    got integer;
BEGIN
    IF p_limit < 1 THEN
        RETURN;
    END IF;
    -- a claim lost to a crash of the database only makes the row claimable again, as a lease
    -- that ran out does: no need to wait for the log to reach the disk
    PERFORM set_config('synchronous_commit', 'off', true);
    -- candidates: due, first of their lane (so no two of one lane), the lane not held, as
    -- this snapshot sees it; more than the batch, since other replicas claiming meanwhile
    -- take some of the same ones
    SELECT array_agg(c.id ORDER BY c.received_at, c.id),
           array_agg(c.lane ORDER BY c.received_at, c.id)
    INTO ids, lanes
    FROM (
        SELECT d.id, d.lane, d.received_at FROM app_deliveries d
        WHERE d.status IN ('pending', 'running') AND {_DUE}
          AND (d.lane IS NULL OR {_LANE_FREE.format(row="d")})
        ORDER BY d.received_at, d.id
        LIMIT 4 * p_limit + 16
    ) c;
    WHILE taken < p_limit AND tried < coalesce(cardinality(ids), 0) LOOP
        -- the lanes of as many as the batch still needs, oldest first: one claimer per lane
        -- at a time (try, never wait: a lane another replica is claiming in is passed over)
        SELECT array_agg(c.id ORDER BY c.n), max(c.n) INTO mine, reached
        FROM (
            SELECT c.id, c.n FROM unnest(ids, lanes) WITH ORDINALITY AS c(id, lane, n)
            WHERE c.n > tried
              AND (c.lane IS NULL OR pg_try_advisory_xact_lock(1885954913, hashtext(c.lane)))
            LIMIT p_limit - taken
        ) c;
        EXIT WHEN mine IS NULL;
        tried := reached;
        -- a statement of its own, so its snapshot sees every claim committed before the
        -- locks: each lane looked at again, each row still due, and not one that another
        -- replica is claiming (nobody waits)
        RETURN QUERY
            UPDATE app_deliveries u
            SET status = 'running', attempts = u.attempts + 1, claimed_by = p_owner,
                lease_until = now_ + p_lease, updated_at = now_
            FROM (
                -- row by row along the primary key, whatever the planner's statistics say
                -- (OFFSET 0: a lookup for each, not a join the planner may turn around)
                SELECT c.id FROM unnest(mine) AS m(id), LATERAL (
                    SELECT d.id FROM app_deliveries d
                    WHERE d.id = m.id AND {_DUE}
                      AND (d.lane IS NULL OR {_LANE_FREE.format(row="d")})
                    OFFSET 0
                    FOR UPDATE OF d SKIP LOCKED
                ) c
            ) c
            WHERE u.id = c.id
            RETURNING u.*;
        GET DIAGNOSTICS got = ROW_COUNT;
        taken := taken + got;
    END LOOP;
END
$$
"""  # noqa: S608

# the one-at-a-time claim of earlier versions, which replicas not yet upgraded still call
CLAIM_ONE_FUNCTION = """
CREATE OR REPLACE FUNCTION pipeline_bot_claim_delivery(
    p_owner text, p_lease double precision, p_now double precision DEFAULT NULL
) RETURNS SETOF app_deliveries LANGUAGE sql VOLATILE AS $$
    SELECT * FROM pipeline_bot_claim_deliveries(p_owner, p_lease, 1, p_now)
$$
"""

# the driver's own placeholders: DeliveryStore runs these on a connection of its own (psycopg)
CLAIM_MANY = (
    "SELECT * FROM pipeline_bot_claim_deliveries("
    "%s, CAST(%s AS double precision), %s, CAST(%s AS double precision))"
)

# a batch of outcomes in one statement, so in one transaction and one durable commit; a row
# whose `held_by` no longer holds it (its lease ran out and another replica took it) is left
FINISH_MANY = (
    "UPDATE app_deliveries AS d SET status = o.status, error = o.error, updated_at = %s, "
    "claimed_by = NULL, lease_until = NULL, "
    "next_attempt_at = coalesce(o.retry_at, d.next_attempt_at) "
    "FROM unnest(CAST(%s AS text[]), CAST(%s AS text[]), CAST(%s AS text[]), "
    "CAST(%s AS double precision[]), CAST(%s AS text[])) "
    "AS o(id, status, error, retry_at, held_by) "
    "WHERE d.id = o.id "
    "AND (o.held_by IS NULL OR (d.claimed_by = o.held_by AND d.status = 'running')) "
    "RETURNING d.id"
)

# the unfinished rows, in order and by lane: what claims read, however many done rows are kept
INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_app_deliveries_unfinished ON app_deliveries "
    "(received_at, id) WHERE status IN ('pending', 'running')",
    "CREATE INDEX IF NOT EXISTS ix_app_deliveries_lane_unfinished ON app_deliveries "
    "(lane, received_at, id) WHERE status IN ('pending', 'running')",
    # the claims held now, by lane: whether a lane is held, without reading its queued rows
    "CREATE INDEX IF NOT EXISTS ix_app_deliveries_lane_running ON app_deliveries (lane) "
    "WHERE status = 'running'",
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
    conn.execute(text(CLAIM_ONE_FUNCTION))


def migrate_sqlite(conn: Connection) -> None:
    """The lease columns on a table an older version made (one process serves the file)."""
    present = {row[1] for row in conn.execute(text("PRAGMA table_info(app_deliveries)"))}
    for name, kind in COLUMNS:
        if name not in present:
            sqlite_kind = "REAL" if kind.startswith("DOUBLE") else "VARCHAR(160)"
            conn.execute(text(f"ALTER TABLE app_deliveries ADD COLUMN {name} {sqlite_kind}"))
