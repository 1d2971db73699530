# optscribe: the API (`optscribe serve`) and, with another command, a job worker (`optscribe worker`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY app ./app
COPY solvers ./solvers
COPY prompts ./prompts
# The postgres extra: the job store of the scale-out shape (docker-compose.yml) is Postgres.
RUN pip install ".[postgres]"

# Never run as root; the embedded SQLite store and caches live under /data.
RUN useradd --create-home --uid 10001 optscribe \
    && mkdir -p /data \
    && chown optscribe:optscribe /data
USER optscribe
ENV OPTSCRIBE_DATA_DIR=/data \
    OPTSCRIBE_API_HOST=0.0.0.0 \
    OPTSCRIBE_API_PORT=8000
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"

CMD ["optscribe", "serve"]
