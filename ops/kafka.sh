#!/usr/bin/env bash
# A real Apache Kafka broker (single node, KRaft: broker + controller in one JVM) for local runs and
# end-to-end tests. The jars come from Maven Central through ops/pom.xml.
#
#   ops/kafka.sh fetch                 download the broker jars (once; cached in $KPREC_KAFKA_LIBS)
#   ops/kafka.sh start DIR [PORT [HOST]]
#                                      format DIR as a fresh KRaft log dir, start on HOST:PORT
#                                      (listener and advertised listener; default 127.0.0.1), wait
#                                      until it serves metadata; prints the bootstrap address
#   ops/kafka.sh stop DIR              stop the broker started in DIR (SIGTERM, then SIGKILL)
#   ops/kafka.sh restart DIR           stop it and start it again on the same ports and log dir
#                                      (topics, records and committed offsets are kept)
#   ops/kafka.sh status DIR            exit 0 if it runs
#   ops/kafka.sh cluster-id [N]        print N (1) fresh random cluster ids (never one starting with -)
#
# Optional security mode of `start` (default: one PLAINTEXT listener): KAFKA_SECURITY=
#   ssl               clients connect over TLS        (KAFKA_SSL_KEYSTORE, KAFKA_SSL_PASSWORD)
#   mtls              TLS with client certificates    (and KAFKA_SSL_TRUSTSTORE: the clients' CA)
#   sasl_ssl_plain    SASL PLAIN over TLS             (and KAFKA_SASL_USERS="user:password ...")
#   sasl_oauthbearer  SASL OAUTHBEARER over TLS, Kafka's unsecured JWT validator
# The keystores are PKCS12 files protected by KAFKA_SSL_PASSWORD (the caller makes them: see
# tests/security/). The secure listener is the one printed; the broker talks to itself over a
# second, PLAINTEXT loopback listener.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LIBS=${KPREC_KAFKA_LIBS:-${XDG_CACHE_HOME:-$HOME/.cache}/kprec/kafka-libs}

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

fetch() {
  if [ -f "$LIBS/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { echo "kafka.sh: mvn not found: run ops/install-deps.sh" >&2; exit 1; }
  mkdir -p "$LIBS"
  echo "kafka.sh: fetching the Kafka broker jars into $LIBS" >&2
  mvn -q -B -f "$HERE/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$LIBS" >&2
  touch "$LIBS/.complete"
}

# launch DIR: the broker of DIR/server.properties in the background, its pid in DIR/kafka.pid
launch() {
  local dir=$1
  local java_opts=(-Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true
                   -Dlog4j2.configurationFile="$dir/log4j2.properties")
  nohup java "${java_opts[@]}" -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
        >"$dir/stdout.log" 2>&1 </dev/null &
  echo $! >"$dir/kafka.pid"
}

# wait_started DIR N: until kafka.log says "Kafka Server started" more than N times (a restart
# appends to the log of the first start); prints the bootstrap address and exits
wait_started() {
  local dir=$1 before=$2 n
  for _ in $(seq 1 600); do
    n=$(grep -c "Kafka Server started" "$dir/kafka.log" 2>/dev/null || true)
    if [ "${n:-0}" -gt "$before" ]; then cat "$dir/bootstrap"; exit 0; fi
    kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null ||
      { echo "kafka.sh: broker died:" >&2; tail -30 "$dir/stdout.log" "$dir/kafka.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "kafka.sh: broker did not start within 120 s" >&2; tail -30 "$dir/kafka.log" >&2; exit 1
}

# stop_broker DIR: SIGTERM, then SIGKILL after 20 s
stop_broker() {
  local dir=$1 pid
  [ -f "$dir/kafka.pid" ] || return 0
  pid=$(cat "$dir/kafka.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/kafka.pid"
}

cmd=${1:-}; shift || true
# A random cluster id: 16 bytes in URL-safe base64 (what `kafka-storage random-uuid` prints). One
# in 64 of those begins with '-', which the storage tool's option parser takes for an option, so
# such an id is drawn again (Kafka's own generator skips them too).
cluster_id() {
  local id
  while :; do
    id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    [ "${id#-}" = "$id" ] && { echo "$id"; return; }
  done
}

case "$cmd" in
fetch) fetch ;;
start)
  dir=${1:?usage: kafka.sh start DIR [PORT [HOST]]}; port=${2:-$(free_port)}; host=${3:-127.0.0.1}
  fetch
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  if [ -f "$dir/kafka.pid" ] && kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; then
    echo "kafka.sh: already running in $dir" >&2; cat "$dir/bootstrap"; exit 0
  fi
  cport=$(free_port)
  rm -rf "$dir/data"
  sec=${KAFKA_SECURITY:-}
  if [ -z "$sec" ]; then
    listeners="PLAINTEXT://$host:$port,CONTROLLER://127.0.0.1:$cport"
    advertised="PLAINTEXT://$host:$port"
    protomap="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    ibl=PLAINTEXT
  else
    iport=$(free_port)
    case "$sec" in
    ssl|mtls) proto=SSL ;;
    sasl_ssl_plain|sasl_oauthbearer) proto=SASL_SSL ;;
    *) echo "kafka.sh: KAFKA_SECURITY must be ssl, mtls, sasl_ssl_plain or sasl_oauthbearer" >&2; exit 2 ;;
    esac
    : "${KAFKA_SSL_KEYSTORE:?KAFKA_SECURITY=$sec needs KAFKA_SSL_KEYSTORE}"
    : "${KAFKA_SSL_PASSWORD:?KAFKA_SECURITY=$sec needs KAFKA_SSL_PASSWORD}"
    listeners="SECURE://127.0.0.1:$port,INTERNAL://127.0.0.1:$iport,CONTROLLER://127.0.0.1:$cport"
    advertised="SECURE://127.0.0.1:$port,INTERNAL://127.0.0.1:$iport"
    protomap="SECURE:$proto,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
    ibl=INTERNAL
  fi
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
listener.security.protocol.map=$protomap
inter.broker.listener.name=$ibl
log.dirs=$dir/data
num.partitions=6
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.segment.bytes=67108864
PROPS
  if [ -n "$sec" ]; then
    cat >>"$dir/server.properties" <<PROPS
listener.name.secure.ssl.keystore.type=PKCS12
listener.name.secure.ssl.keystore.location=$KAFKA_SSL_KEYSTORE
listener.name.secure.ssl.keystore.password=$KAFKA_SSL_PASSWORD
listener.name.secure.ssl.key.password=$KAFKA_SSL_PASSWORD
PROPS
    case "$sec" in
    mtls)
      : "${KAFKA_SSL_TRUSTSTORE:?KAFKA_SECURITY=mtls needs KAFKA_SSL_TRUSTSTORE}"
      cat >>"$dir/server.properties" <<PROPS
listener.name.secure.ssl.client.auth=required
listener.name.secure.ssl.truststore.type=PKCS12
listener.name.secure.ssl.truststore.location=$KAFKA_SSL_TRUSTSTORE
listener.name.secure.ssl.truststore.password=$KAFKA_SSL_PASSWORD
PROPS
      ;;
    sasl_ssl_plain)
      users=""
      for up in ${KAFKA_SASL_USERS:?KAFKA_SECURITY=sasl_ssl_plain needs KAFKA_SASL_USERS}; do
        users="$users user_${up%%:*}=\"${up#*:}\""
      done
      cat >>"$dir/server.properties" <<PROPS
sasl.enabled.mechanisms=PLAIN
listener.name.secure.sasl.enabled.mechanisms=PLAIN
listener.name.secure.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required$users;
PROPS
      ;;
    sasl_oauthbearer)
      cat >>"$dir/server.properties" <<PROPS
sasl.enabled.mechanisms=OAUTHBEARER
listener.name.secure.sasl.enabled.mechanisms=OAUTHBEARER
listener.name.secure.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="broker";
PROPS
      ;;
    esac
    chmod 600 "$dir/server.properties"
  fi
  cat >"$dir/log4j2.properties" <<PROPS
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/kafka.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.org.name = org.apache.kafka
logger.org.level = warn
PROPS
  java_opts=(-Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true
             -Dlog4j2.configurationFile="$dir/log4j2.properties")
  cid=$(cluster_id)
  java "${java_opts[@]}" -cp "$LIBS/*" kafka.tools.StorageTool format -t "$cid" \
       -c "$dir/server.properties" >"$dir/format.log" 2>&1 ||
    { echo "kafka.sh: storage format failed:" >&2; cat "$dir/format.log" >&2; exit 1; }
  launch "$dir"
  echo "$host:$port" >"$dir/bootstrap"
  wait_started "$dir" 0 ;;
stop)
  dir=${1:?usage: kafka.sh stop DIR}
  stop_broker "$dir" ;;
restart)
  dir=${1:?usage: kafka.sh restart DIR}
  dir=$(cd "$dir" && pwd)
  [ -f "$dir/server.properties" ] && [ -f "$dir/bootstrap" ] && [ -d "$dir/data" ] ||
    { echo "kafka.sh: no broker was started in $dir (kafka.sh start first)" >&2; exit 1; }
  stop_broker "$dir"
  started=$(grep -c "Kafka Server started" "$dir/kafka.log" 2>/dev/null || true)
  launch "$dir"
  wait_started "$dir" "${started:-0}" ;;
cluster-id) for _ in $(seq "${1:-1}"); do cluster_id; done ;;
status)
  dir=${1:?usage: kafka.sh status DIR}
  [ -f "$dir/kafka.pid" ] && kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null ;;
*) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
