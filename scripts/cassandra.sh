#!/usr/bin/env bash
# Runs a real single-node Apache Cassandra 5.0 for the test suite, without Docker or root.
#
#   scripts/cassandra.sh up        install (first time) and start; wait until CQL answers
#   scripts/cassandra.sh down      stop (SIGTERM, then SIGKILL after a deadline); data is kept
#   scripts/cassandra.sh restart   down + up, data kept (used by fault tests)
#   scripts/cassandra.sh status    print "up" or "down" (always exits 0)
#   scripts/cassandra.sh wipe      down, then delete data and logs (next `up` starts empty)
#   scripts/cassandra.sh cql [-e STATEMENT]...   run CQL through scripts/cassandra/cql.py
#
# Jars come from Maven Central through `mvn` (cassandra-all and its runtime dependencies); the JVM
# is the system JDK 17 (Cassandra 5.0 supports 11 and 17 only). Nothing is written inside the repo:
#   $SPACECAST_CASSANDRA_HOME (default ~/.cache/spacecast/cassandra)
#     lib/   jars (+ lib/.complete once a copy succeeded)   conf/  rendered config
#     data/  data, commitlog, hints, ...                    logs/  system.log, stdout.log
#     tmp/   java.io.tmpdir (native libraries unpack here)  cassandra.pid
#
# Environment:
#   SPACECAST_CASSANDRA_PORT          CQL port (default 9042), listens on 127.0.0.1 only
#   SPACECAST_CASSANDRA_STORAGE_PORT  internode port (default 17000; never used by a single node
#                                     but must be free)
#   SPACECAST_CASSANDRA_VERSION       cassandra-all version (default 5.0.9)
#   SPACECAST_CASSANDRA_HEAP          -Xms/-Xmx (default 3G: every table costs Cassandra about 1 MiB
#                                     of heap, and the test suite creates a keyspace of ~11 tables
#                                     per black-box test on the CQL store, ~150 in one run; 1G ran
#                                     out at ~1,070 tables)
#   SPACECAST_CASSANDRA_START_TIMEOUT seconds to wait for CQL (default 180)
#   SPACECAST_CASSANDRA_STOP_TIMEOUT  seconds to wait after SIGTERM before SIGKILL (default 60)
#   SPACECAST_CASSANDRA_JAVA          java binary (default: $JAVA_HOME/bin/java, a JDK 17 under
#                                     /usr/lib/jvm, or `java` on PATH; must be version 17)
set -euo pipefail
# shellcheck source=scripts/lib/daemon.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/daemon.sh"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TEMPLATES="$SCRIPT_DIR/cassandra"
CQL_PY="$TEMPLATES/cql.py"

HOME_DIR="${SPACECAST_CASSANDRA_HOME:-$HOME/.cache/spacecast/cassandra}"
VERSION="${SPACECAST_CASSANDRA_VERSION:-5.0.9}"
PORT="${SPACECAST_CASSANDRA_PORT:-9042}"
STORAGE_PORT="${SPACECAST_CASSANDRA_STORAGE_PORT:-17000}"
HEAP="${SPACECAST_CASSANDRA_HEAP:-3G}"
START_TIMEOUT="${SPACECAST_CASSANDRA_START_TIMEOUT:-180}"
STOP_TIMEOUT="${SPACECAST_CASSANDRA_STOP_TIMEOUT:-60}"
HOST=127.0.0.1

mkdir -p "$HOME_DIR"
HOME_DIR="$(cd "$HOME_DIR" && pwd)" # absolute: it ends up in file:// URLs and the yaml
LIB="$HOME_DIR/lib"
CONF="$HOME_DIR/conf"
DATA="$HOME_DIR/data"
LOGS="$HOME_DIR/logs"
TMPD="$HOME_DIR/tmp"
PIDFILE="$HOME_DIR/cassandra.pid"
MARKER="$LIB/.complete"
# Identifies our JVM on its command line (pid files can go stale and pids get reused).
CONFIG_ARG="-Dcassandra.config=file://$CONF/cassandra.yaml"

log() { printf 'cassandra: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

# ---------------------------------------------------------------------------------------------
# Process and readiness

# Prints the pid of our running Cassandra JVM, if any (started with our config file).
running_pid() {
  daemon_pid org.apache.cassandra.service.CassandraDaemon "$CONFIG_ARG"
}

# True when `SELECT release_version FROM system.local` succeeds.
cql_ready() {
  python3 "$CQL_PY" --host "$HOST" --port "$PORT" --timeout "${1:-5}" --quiet 2>/dev/null
}

# JVM output of the last start (usually empty), then the last 50 lines of the Cassandra log.
# Very long lines (classpath, the node configuration dump) are cut at 2000 characters.
show_logs() {
  if [[ -s "$LOGS/stdout.log" ]]; then
    log "---- $LOGS/stdout.log (last start) ----"
    awk '/^==== .* starting Cassandra/ {n = 0} {buf[n++] = $0} END {for (i = 0; i < n; i++) print buf[i]}' \
      "$LOGS/stdout.log" | tail -n 50 | cut -c1-2000 >&2
  fi
  if [[ -s "$LOGS/system.log" ]]; then
    log "---- last 50 lines of $LOGS/system.log ----"
    tail -n 50 "$LOGS/system.log" | cut -c1-2000 >&2
  fi
}

# ---------------------------------------------------------------------------------------------
# Installation and configuration

# Installs Debian packages when running as root on a machine that lacks them (fresh machines);
# otherwise says what to install.
apt_install() {
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "installing $* with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
  else
    die "missing prerequisite: install $*"
  fi
}

find_java() {
  find_java_17 && return 0
  apt_install openjdk-17-jdk-headless
  find_java_17 && return 0
  die "no JDK 17 found (Cassandra 5.0 runs on 11 or 17 only); install openjdk-17-jdk-headless or set SPACECAST_CASSANDRA_JAVA"
}

find_java_17() {
  local cands=() c v
  [[ -n "${SPACECAST_CASSANDRA_JAVA:-}" ]] && cands+=("$SPACECAST_CASSANDRA_JAVA")
  [[ -n "${JAVA_HOME:-}" ]] && cands+=("$JAVA_HOME/bin/java")
  for c in /usr/lib/jvm/*17*/bin/java; do [[ -x "$c" ]] && cands+=("$c"); done
  command -v java >/dev/null && cands+=("$(command -v java)")
  for c in "${cands[@]}"; do
    [[ -x "$c" ]] || continue
    v="$("$c" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
    if [[ "$v" == 17 || "$v" == 17.* ]]; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

# Downloads cassandra-all $VERSION and its runtime dependencies into $LIB (skipped when the
# marker says the set is complete for this version).
ensure_jars() {
  if [[ -f "$MARKER" && "$(<"$MARKER")" == "$VERSION" && -f "$LIB/cassandra-all-$VERSION.jar" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || apt_install maven
  log "downloading cassandra-all $VERSION and dependencies from Maven Central (first run only)"
  local work="$HOME_DIR/fetch" start=$SECONDS
  rm -rf "$work" "$LIB.new"
  mkdir -p "$work"
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.spacecast</groupId>
  <artifactId>cassandra-fetch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>$VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
  if ! mvn -B -q -f "$work/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$LIB.new" >"$work/mvn.log" 2>&1; then
    tail -n 40 "$work/mvn.log" >&2
    die "mvn copy-dependencies failed (full log: $work/mvn.log)"
  fi
  [[ -f "$LIB.new/cassandra-all-$VERSION.jar" ]] || die "mvn succeeded but cassandra-all-$VERSION.jar is missing"
  ls "$LIB.new"/jamm-*.jar >/dev/null 2>&1 || die "mvn succeeded but the jamm agent jar is missing"
  rm -rf "$LIB"
  mv "$LIB.new" "$LIB"
  echo "$VERSION" >"$MARKER"
  rm -rf "$work"
  log "jars ready in $LIB ($(find "$LIB" -name '*.jar' | wc -l) jars, $((SECONDS - start)) s)"
}

render() { # template output: substitutes @PORT@, @STORAGE_PORT@, @DATA@
  local s
  s="$(<"$1")"
  s="${s//@PORT@/$PORT}"
  s="${s//@STORAGE_PORT@/$STORAGE_PORT}"
  s="${s//@DATA@/$DATA}"
  printf '%s\n' "$s" >"$2.tmp"
  mv "$2.tmp" "$2"
}

write_config() {
  mkdir -p "$CONF" "$DATA" "$LOGS" "$TMPD"
  render "$TEMPLATES/cassandra.yaml.in" "$CONF/cassandra.yaml"
  cp "$TEMPLATES/logback.xml" "$CONF/logback.xml"
  # Java @argfile: one flag per line; comments and blank lines dropped as Cassandra's bin/ does.
  grep -E '^-' "$TEMPLATES/jvm17-server.options" >"$CONF/jvm17.args"
}

# ---------------------------------------------------------------------------------------------
# Commands

cmd_up() {
  local pid
  if cql_ready; then
    echo "cassandra: already up on $HOST:$PORT"
    return 0
  fi
  if pid="$(running_pid)"; then
    log "pid $pid is running but CQL does not answer yet; waiting for it"
  else
    if port_in_use "$PORT"; then
      die "port $HOST:$PORT is in use by something that does not answer CQL; set SPACECAST_CASSANDRA_PORT"
    fi
    if port_in_use "$STORAGE_PORT"; then
      die "storage port $HOST:$STORAGE_PORT is in use; set SPACECAST_CASSANDRA_STORAGE_PORT"
    fi
    local java
    java="$(find_java)"
    ensure_jars
    write_config
    local jamm
    jamm="$(ls "$LIB"/jamm-*.jar | head -n 1)"
    rm -f "$PIDFILE"
    printf '\n==== %s starting Cassandra %s on %s:%s ====\n' "$(date -u +%FT%TZ)" "$VERSION" "$HOST" "$PORT" >>"$LOGS/stdout.log"
    local args=(
      "-Xms$HEAP" "-Xmx$HEAP"
      "@$CONF/jvm17.args"
      "-javaagent:$jamm"
      "$CONFIG_ARG"
      "-Dcassandra.storagedir=$DATA"
      "-Dcassandra.logdir=$LOGS"
      "-Dlogback.configurationFile=file://$CONF/logback.xml"
      "-Djava.io.tmpdir=$TMPD"
      -Dcassandra-foreground=yes
      -Dcassandra.skip_wait_for_gossip_to_settle=0
      -Dcassandra.unsafesystem=true
      -Dcassandra.shutdown_announce_in_ms=0
      -XX:ErrorFile="$LOGS/hs_err_%p.log"
      -cp "$CONF:$LIB/*"
      org.apache.cassandra.service.CassandraDaemon
    )
    # New session so Ctrl-C on a test run does not take the server down with it; the inner
    # shell records its own pid and then becomes the JVM (exec), so the pid file is exact.
    (
      cd "$HOME_DIR"
      # shellcheck disable=SC2016
      exec setsid bash -c 'ulimit -n 100000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
        echo $$ >"$1"; shift; exec "$@"' cassandra "$PIDFILE" "$java" "${args[@]}" \
        </dev/null >>"$LOGS/stdout.log" 2>&1
    ) &
    local t=0
    while [[ ! -s "$PIDFILE" ]] && ((t < 50)); do
      sleep 0.1
      t=$((t + 1))
    done
    pid="$(<"$PIDFILE")" || die "Cassandra did not start (no pid file)"
    log "started pid $pid, waiting up to ${START_TIMEOUT}s for CQL on $HOST:$PORT"
  fi

  local start=$SECONDS deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      show_logs
      rm -f "$PIDFILE"
      die "Cassandra (pid $pid) exited during startup"
    fi
    if cql_ready; then
      log "up on $HOST:$PORT (pid $pid, CQL ready after $((SECONDS - start)) s)"
      return 0
    fi
    sleep 1
  done
  show_logs
  die "CQL did not answer on $HOST:$PORT within ${START_TIMEOUT}s (pid $pid left running; run '$0 down')"
}

cmd_down() {
    daemon_down
}

cmd_status() {
  if cql_ready; then
    echo "up"
  else
    local pid
    if pid="$(running_pid)"; then
      echo "down"
      log "pid $pid is running but CQL does not answer on $HOST:$PORT (starting, or stuck)"
    else
      echo "down"
    fi
  fi
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  restart)
    cmd_down
    cmd_up
    ;;
  status) cmd_status ;;
  wipe)
    cmd_down
    rm -rf "$DATA" "$LOGS" "$TMPD"
    log "data and logs deleted"
    ;;
  cql)
    shift
    exec python3 "$CQL_PY" --host "$HOST" --port "$PORT" "$@"
    ;;
  *)
    echo "usage: $0 up|down|restart|status|wipe|cql [-e STATEMENT]..." >&2
    exit 2
    ;;
esac
