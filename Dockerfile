# Image for the streamq worker and web services of docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY pyproject.toml README.md ./
COPY streamq ./streamq
RUN pip install '.[web]'

# The example app (examples.distribution.app:app) is imported from the working directory.
COPY examples ./examples

RUN useradd --system --uid 10001 --home-dir /app streamq \
    && mkdir -p /data && chown streamq /data   # a fresh named volume copies this owner
USER streamq

CMD ["python", "-m", "streamq.worker", "--help"]
