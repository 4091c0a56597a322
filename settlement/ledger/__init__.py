"""The KZT double-entry ledger (DESIGN §7): postings, the posting consumer, payouts, reports."""
