# RocketMQ 4.9.7 laid out as apache/rocketmq:4.9.7 lays it out (ROCKETMQ_HOME
# /home/rocketmq/rocketmq-4.9.7, user rocketmq uid 3000, store and logs under /home/rocketmq),
# built without a registry: BASE is the Debian root filesystem build.py imports (with Debian's
# openjdk-17-jre-headless), lib/ the jars Maven fetched (`make rocketmq`), bin/ and conf/ the
# scripts and log settings of docker/local/rocketmq (the published image's come from the
# binary distribution, which Maven Central does not carry). Built by docker/local/build.py.
ARG BASE
FROM ${BASE}

ARG ROCKETMQ_VERSION=4.9.7
ENV ROCKETMQ_VERSION=${ROCKETMQ_VERSION} \
    ROCKETMQ_HOME=/home/rocketmq/rocketmq-${ROCKETMQ_VERSION}

RUN groupadd --gid 3000 rocketmq \
    && useradd --uid 3000 --gid 3000 --home-dir /home/rocketmq --shell /bin/sh rocketmq \
    && install -d -o rocketmq -g rocketmq -m 0755 \
       /home/rocketmq /home/rocketmq/store /home/rocketmq/logs

COPY lib/ ${ROCKETMQ_HOME}/lib/
COPY conf/ ${ROCKETMQ_HOME}/conf/
COPY bin/ ${ROCKETMQ_HOME}/bin/

# As in the published image: the store and logs belong to rocketmq (a named volume mounted on
# the store starts with this owner), and `sh mqnamesrv` works from the working directory.
USER rocketmq
WORKDIR ${ROCKETMQ_HOME}/bin
VOLUME ["/home/rocketmq/store", "/home/rocketmq/logs"]
EXPOSE 9876 10909 10911 10912
