"""Rate feeds over the network, one module per provider, and the worker's refresh duty.

  nbk      the National Bank of Kazakhstan's official daily rates (XML), e.g. USD/KZT
  exmo     EXMO's public ticker: BTC quoted against KZT directly
  binance  Binance's public 24 h ticker: BTC/USDT (crossed with USD/KZT in pos.rate_config)
  transport the one HTTP GET they share, mapping timeouts, 429 and 5xx to typed errors
  feeds    which adapter serves which configured feed
  refresh  the `refresh-rates` duty: each feed on its own interval with its own backoff

Adapters translate each provider's vocabulary (`description`/`quant`, `last_trade`/`updated`,
`lastPrice`/`closeTime`) into a `pos.rates.RateQuote` at this boundary. Nothing connects at
import; the web tier never calls these (it reads what the duty stored in Redis).
"""
