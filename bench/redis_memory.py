"""Benchmark: Redis memory per open invoice.

`count` open BTC invoices are mirrored into a fresh embedded Redis exactly as
`pos.invoices.publish_invoice_events` mirrors a new invoice: the watch-index entry
(`cc:watch:btc`, address -> id) and `Coordinator.apply_event` with the `invoice.created` event
and the `pos.invoices.snapshot` of the invoice (hash `cc:inv:{id}`, plus one stream entry).
Memory is Redis' own `used_memory` before and after, divided by `count`; the stream's share
(`MEMORY USAGE cc:events`) is shown apart, since the stream is a bounded log (MAXLEN ~1M),
not state kept per open invoice. Target: under 500 bytes per open invoice.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import say
from pos.coordination import EVENT_STREAM, Coordinator, connect, invoice_key, watch_key
from pos.invoices import new_invoice_id, snapshot
from pos.models import Invoice
from pos.redis_server import EmbeddedRedis
from pos.states import InvoiceStatus, PaymentMethod

TAG = "redis"
TARGET_BYTES = 500


def _invoice(now: datetime) -> Invoice:
    """A transient open BTC invoice with realistic field sizes (never stored in a database)."""
    return Invoice(
        id=new_invoice_id(),
        merchant_id=17,
        method=PaymentMethod.BTC,
        status=InvoiceStatus.NEW,
        version=1,
        price_tiyn=2_500_00,
        rate=Decimal("45123456.78"),
        rate_source="sandbox",
        rate_as_of=now,
        amount_due_atomic=5_541,
        amount_paid_atomic=0,
        # The length of a regtest P2WPKH address; bech32 checksums do not change the memory.
        btc_address=f"bcrt1q{os.urandom(19).hex()}",
        paid_partial=False,
        paid_over=False,
        paid_late=False,
        marked=False,
        created_at=now,
        expires_at=now + timedelta(minutes=15),
    )


def _created_event(invoice: Invoice, now: datetime) -> dict[str, str]:
    # The fields `pos.invoices` streams for an `invoice.created` event.
    return {
        "id": str(uuid.uuid4()),
        "type": "invoice.created",
        "invoice": invoice.id,
        "merchant": str(invoice.merchant_id),
        "version": "1",
        "from": "",
        "to": invoice.status.value,
        "at": now.isoformat(),
        "data": json.dumps({"price_tiyn": invoice.price_tiyn}, sort_keys=True),
    }


def run(count: int = 100_000) -> dict[str, Any]:
    """Mirror `count` open invoices into an empty Redis; bytes per invoice."""
    directory = Path(tempfile.mkdtemp(prefix="cc-bench-redis-"))
    server = EmbeddedRedis(directory)
    try:
        client = connect(server.start())
        coordinator = Coordinator(client)
        before = int(client.info("memory")["used_memory"])
        now = datetime.now(UTC)
        say(TAG, f"mirroring {count:,} open invoices (snapshot + watch entry + created event)")
        sample = ""
        watches: dict[str, str] = {}
        for number in range(count):
            invoice = _invoice(now)
            assert invoice.btc_address is not None
            watches[invoice.btc_address] = invoice.id
            coordinator.apply_event(
                invoice.id, 1, _created_event(invoice, now), snapshot(invoice), 1, False
            )
            sample = invoice.id
            if len(watches) == 1000:  # the same HSETs as `watch`, a thousand per round trip
                coordinator.watch_many("btc", watches)
                watches.clear()
            if (number + 1) % 25_000 == 0:
                say(TAG, f"  {number + 1:,}/{count:,}")
        coordinator.watch_many("btc", watches)
        after = int(client.info("memory")["used_memory"])
        stream_bytes = int(client.memory_usage(EVENT_STREAM) or 0)
        watch_bytes = int(client.memory_usage(watch_key("btc")) or 0)
        snapshot_bytes = int(client.memory_usage(invoice_key(sample)) or 0)
        client.close()
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    total = after - before
    state = total - stream_bytes
    per_invoice = state / count
    return {
        "open_invoices": count,
        "used_memory_delta_bytes": total,
        "bytes_per_invoice_state": round(per_invoice, 1),
        "bytes_per_invoice_with_stream_entry": round(total / count, 1),
        "one_snapshot_hash_bytes": snapshot_bytes,
        "watch_index_bytes_per_entry": round(watch_bytes / count, 1),
        "stream_bytes_per_event": round(stream_bytes / count, 1),
        "target": f"< {TARGET_BYTES} bytes per open invoice (snapshot + watch entry)",
        "met": per_invoice < TARGET_BYTES,
    }
