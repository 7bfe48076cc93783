# The watchdog as the repository's Dockerfile makes it, built without a registry: BASE is the
# Debian root filesystem build.py imports (Debian's python3 and python3-venv), wheels/ the
# watchdog's wheel built from this checkout and its dependencies' wheels from PyPI, installed
# offline into a venv. Built by docker/local/build.py.
ARG BASE
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/rmq-watchdog/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

COPY wheels/ /tmp/wheels/
RUN python3 -m venv /opt/rmq-watchdog \
    && /opt/rmq-watchdog/bin/pip install --no-index --find-links /tmp/wheels rmq-watchdog \
    && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/rmq-watchdog \
       --shell /usr/sbin/nologin rmq-watchdog \
    && install -d -o rmq-watchdog -g rmq-watchdog -m 0750 /var/lib/rmq-watchdog \
    && install -d -m 0755 /etc/rmq-watchdog

WORKDIR /var/lib/rmq-watchdog
# Not root, as in the published form (the engine socket is granted by group in compose).
USER rmq-watchdog
VOLUME ["/var/lib/rmq-watchdog"]
EXPOSE 9108

ENTRYPOINT ["rmq-watchdog"]
CMD ["run", "-c", "/etc/rmq-watchdog/watchdog.toml", "--log-format", "json"]
