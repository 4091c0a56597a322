"""Fault drills (`make drills`, `python -m drills [--quick]`): the whole stack on loopback ports,
real processes only, while workers are killed, Redis is flushed and killed, the Bitcoin node and
the Solana validator are stopped, hung and killed, the chain reorganizes and double-spends, two
workers run at once and invoices arrive at 50 a second; then an audit of the whole database
against the chains' own truth (drills.audit says what counts as lost, duplicated, wrong or
unbalanced).

Modules: stack (the processes), chains and core_node (Bitcoin drivers, shared with tests/btc),
sandbox_node, receiver (the webhook receiver), traffic (API client, shopper, miner), scenarios
(the drills), truth and audit (the verdicts), runner (one stack's run).
"""
