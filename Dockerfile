# The powerwall-bus image: every component, selected by the command (`pwbus <component>`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PWBUS_STATE_DIR=/var/lib/pwbus

WORKDIR /app
# The same pinned versions as CI (constraints.txt); `fast` is the writer's Rust schema check.
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY pwbus ./pwbus
COPY shared ./shared
COPY producers ./producers
COPY consumers ./consumers
COPY simulator ./simulator
COPY schema ./schema
RUN pip install -c constraints.txt '.[fast]' \
    && useradd --system --home-dir /var/lib/pwbus --create-home pwbus

USER pwbus
VOLUME ["/var/lib/pwbus"]
ENTRYPOINT ["pwbus"]
CMD ["--help"]
