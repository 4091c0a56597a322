"""Payment methods: how an invoice asks to be paid on each chain (no I/O here)."""
