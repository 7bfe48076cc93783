#!/bin/sh
# The JVM of this image's bin/ scripts: RocketMQ's jars on the classpath, Java 17's module
# openings (4.9.x reaches into direct buffers and cleaners, as watchdog/tools/sandbox does), then
# JAVA_OPT_EXT, which docker-compose.yml sets as it would for apache/rocketmq's scripts (the last
# -Xmx wins). Usage: runjava.sh MAIN_CLASS [ARG...]
set -eu
: "${ROCKETMQ_HOME:?ROCKETMQ_HOME is not set}"
# Word splitting of JAVA_OPT_EXT is wanted: it holds several options.
# shellcheck disable=SC2086
exec java \
    --add-opens=java.base/java.nio=ALL-UNNAMED \
    --add-opens=java.base/jdk.internal.ref=ALL-UNNAMED \
    --add-opens=java.base/java.util=ALL-UNNAMED \
    --add-opens=java.base/java.lang=ALL-UNNAMED \
    --add-opens=java.base/sun.nio.ch=ALL-UNNAMED \
    --add-exports=java.base/sun.nio.ch=ALL-UNNAMED \
    -server -Xms256m -Xmx256m -XX:MaxDirectMemorySize=256m -XX:-UsePerfData \
    ${JAVA_OPT_EXT:-} \
    -cp "${ROCKETMQ_HOME}/lib/*" \
    "$@"
