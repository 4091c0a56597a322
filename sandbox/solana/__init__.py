"""Offline Solana sandbox: surfpool validator, sandbox KZTE mint, faucet and shopper wallet.

Entry points: ``validator.start_validator``, ``mint.faucet``, ``wallet.pay_uri``,
``cli.add_arguments``/``cli.run`` and ``install.ensure_installed``. Submodules are
imported on demand so that ``import sandbox.solana`` stays cheap.
"""
