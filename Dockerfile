# CryptoCity Pay: one image, two commands.
#   web:    docker run … cryptocity web --bind 0.0.0.0:8000     (the default command)
#   worker: docker run … cryptocity worker
# Production needs CRYPTOCITY_MODE=production, SECRET_KEY, DATABASE_URL, REDIS_URL,
# BITCOIN_RPC_URL, BITCOIN_NETWORK, SOLANA_RPC_URL, SOLANA_WS_URL and KZTE_MINT (see README).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CRYPTOCITY_MODE=production \
    CRYPTOCITY_DATA_DIR=/var/lib/cryptocity

WORKDIR /app
COPY pyproject.toml README.md ./
COPY pos ./pos
COPY merchant_portal ./merchant_portal
COPY settlement ./settlement
COPY sandbox ./sandbox
COPY bench ./bench
RUN pip install --no-cache-dir . \
    && useradd --system --home /var/lib/cryptocity --create-home cryptocity

USER cryptocity
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"
CMD ["cryptocity", "web", "--bind", "0.0.0.0:8000", "--workers", "4"]
