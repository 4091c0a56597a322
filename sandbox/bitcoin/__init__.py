"""Regtest Bitcoin Core stand-in (JSON-RPC + ZMQ) and a shopper wallet for the sandbox.

Entry points: :func:`sandbox.bitcoin.node.start_node`, :mod:`sandbox.bitcoin.cli`
(``add_arguments``/``run``), :func:`sandbox.bitcoin.wallet.pay_uri` and
:func:`sandbox.bitcoin.bench_block.run`.
"""
