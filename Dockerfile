# rmq-watchdog in a container: `docker compose up` runs it next to a demo cluster
# (docker-compose.yml); for production the systemd unit in deploy/systemd is the reference.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package build needs (see .dockerignore): a change to tests or docs does not
# invalidate the pip layer.
COPY pyproject.toml README.md ./
COPY watchdog ./watchdog
RUN pip install . \
    && rm -rf /src \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/rmq-watchdog \
       --shell /usr/sbin/nologin rmq-watchdog \
    && install -d -o rmq-watchdog -g rmq-watchdog -m 0750 /var/lib/rmq-watchdog \
    && install -d -m 0755 /etc/rmq-watchdog

WORKDIR /var/lib/rmq-watchdog
# Not root: the watchdog needs no privilege of its own (the engine socket the docker host
# backend talks to is granted by group in docker-compose.yml).
USER rmq-watchdog
VOLUME ["/var/lib/rmq-watchdog"]
EXPOSE 9108

ENTRYPOINT ["rmq-watchdog"]
CMD ["run", "-c", "/etc/rmq-watchdog/watchdog.toml", "--log-format", "json"]
