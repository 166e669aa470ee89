# Image for the stumpcast services in compose/ (not used on the development machines).
FROM python:3.11-slim
# gcc builds the gateway's native send loop (gateway/_sendall.c).
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY schemas schemas
COPY runtime runtime
COPY streams streams
COPY analytics analytics
COPY notifier notifier
COPY gateway gateway
COPY media media
COPY bench bench
COPY stumpcast stumpcast
RUN pip install --no-cache-dir .
USER nobody
