"""What the watchers remember between runs: the blocks they scanned and their checkpoint.

Stored in the database (the durable record), so a worker restart — or a new leader — resumes
from the checkpoint and detects a reorg by comparing the hashes it stored with the node's.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pos.db import Base, utcnow


class ScannedBlock(Base):
    """A block a watcher has scanned, by height, for reorg detection (kept for a while)."""

    __tablename__ = "scanned_blocks"
    __table_args__ = (UniqueConstraint("chain", "height"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    chain: Mapped[str] = mapped_column(String(16))
    height: Mapped[int]
    hash: Mapped[str] = mapped_column(String(100))
    scanned_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChainCursor(Base):
    """A watcher's checkpoint; `fence` is the lease's fencing token of the last writer."""

    __tablename__ = "chain_cursors"

    chain: Mapped[str] = mapped_column(String(16), primary_key=True)
    height: Mapped[int]
    block_hash: Mapped[str] = mapped_column(String(100))
    fence: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
