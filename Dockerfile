# dify-gateway: a slim, non-root image.
#   docker build -t dify-gateway .
#   docker run -p 8080:8080 -v $PWD/config:/app/config -v gw-data:/app/data dify-gateway
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY adapters ./adapters
# The `audio` extra (PyAV, with its own FFmpeg) turns Feishu voice messages (Ogg/Opus) into
# MP3 for Dify's audio-to-text; without it the bot answers that voice is not supported.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[audio]"

FROM python:3.12-slim
RUN useradd --create-home --uid 10001 gateway \
 && mkdir -p /app/config /app/data && chown gateway /app/data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "dify-gateway[audio]" \
 && rm -rf /wheels
COPY config/gateway.example.yaml /app/config/gateway.example.yaml
# The default SQLite store (sqlite:///dify-gateway.db) is relative: it lands in the volume.
WORKDIR /app/data
VOLUME /app/data
ENV DIFY_GATEWAY_CONFIG=/app/config/gateway.yaml PYTHONUNBUFFERED=1
USER gateway
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
STOPSIGNAL SIGTERM
CMD ["dify-gateway", "serve"]
