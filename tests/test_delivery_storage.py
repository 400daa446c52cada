"""The App's SQLite queue on disk (issue 15, point 7): its write-ahead log stays bounded under
load, also while no housekeeping checkpoint runs (the worker busy with a long deploy), and the
database, its WAL and shared-memory files are private to the App's user (0600)."""

from __future__ import annotations

import os
import stat

from pipeline_bot.integrations.deliveries import DeliveryStore, NewDelivery

MIB = 1024 * 1024


def _delivery(i: int) -> NewDelivery:
    return NewDelivery(f"d-{i}", "push", None, 1, "o/r", b"x" * 2000, True, "o/r@push")


def test_the_wal_stays_bounded_while_no_checkpoint_is_asked_for(tmp_path):
    """Twenty thousand one-delivery transactions as fast as one thread commits them (about
    350 MiB of log without checkpoints) and no call to checkpoint(): the log stays under 96 MiB
    (it is truncated past 16 MiB; the margin is for a busy machine); a checkpoint() leaves at
    most 16 MiB."""
    store = DeliveryStore(f"sqlite:///{tmp_path / 'app.db'}")
    wal = tmp_path / "app.db-wal"
    largest = 0
    for i in range(20_000):
        store.accept_many([_delivery(i)])
        if i % 100 == 0:
            largest = max(largest, wal.stat().st_size)
    largest = max(largest, wal.stat().st_size)
    store.checkpoint()
    after = wal.stat().st_size if wal.exists() else 0
    store.close()
    print(f"largest WAL {largest / MIB:.1f} MiB, after a checkpoint {after / MIB:.1f} MiB")
    assert largest < 96 * MIB
    assert after <= 16 * MIB


def test_the_database_and_its_wal_are_created_private(tmp_path):
    old = os.umask(0o022)  # the usual umask: files are world-readable unless made otherwise
    try:
        store = DeliveryStore(f"sqlite:///{tmp_path / 'state' / 'app.db'}")
        store.accept_many([_delivery(1)])
        modes = {
            p.name: stat.S_IMODE(p.stat().st_mode)
            for p in (tmp_path / "state").iterdir()
            if p.name.startswith("app.db")
        }
        store.close()
    finally:
        os.umask(old)
    assert {"app.db", "app.db-wal", "app.db-shm"} <= set(modes)
    assert {name: mode & 0o077 for name, mode in modes.items()} == dict.fromkeys(modes, 0)


def test_an_existing_world_readable_database_is_made_private(tmp_path):
    path = tmp_path / "app.db"
    DeliveryStore(f"sqlite:///{path}").close()
    path.chmod(0o644)
    DeliveryStore(f"sqlite:///{path}").close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
