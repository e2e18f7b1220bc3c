# The powerwall-bus image: every component, selected by the command (`pwbus <component>`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PWBUS_STATE_DIR=/var/lib/pwbus

WORKDIR /app
# The same pinned versions as CI (constraints.txt); `fast` is the writer's Rust schema check,
# `plot` lets `pwbus report --plot` draw its charts.
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY pwbus ./pwbus
COPY shared ./shared
COPY producers ./producers
COPY consumers ./consumers
COPY simulator ./simulator
COPY schema ./schema
# uid 999 is the one `useradd --system` gave pwbus in earlier images: volumes made by them
# stay writable. A number in USER also lets a runtime check "not root" without /etc/passwd.
RUN pip install -c constraints.txt '.[fast,plot]' \
    && useradd --system --uid 999 --user-group --home-dir /var/lib/pwbus --create-home pwbus
# compose.yaml's health checks: the check, plus a restart once it has failed for too long.
COPY configuration/docker/pwbus-healthcheck /usr/local/bin/pwbus-healthcheck

USER 999:999
VOLUME ["/var/lib/pwbus"]
ENTRYPOINT ["pwbus"]
CMD ["--help"]
