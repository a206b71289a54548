#!/usr/bin/env bash
# The MySQL 9.7 binlog decode rate: rtsync's MySQL source streaming a binlog range into Arrow
# batches vs `mysqlbinlog --read-from-remote-server --base64-output=decode-rows --verbose` (the
# mysqlbinlog of the same unpacked Oracle MySQL) on the same range, against the `mysql` service.
# It is rtsync-source-mysql's throughput bench (crates/source-mysql/benches/throughput.rs), which
# also reports the snapshot rate first.
#
# usage: scripts/mysql-decode-bench.sh [--rows N] [--debug]
#   --rows N   rows inserted and decoded (default 1000000)
#   --debug    build the bench with the dev profile (quick to build, slow to run: debug figures)
set -euo pipefail
cd "$(dirname "$0")/.."

rows=1000000
profile=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rows) rows="$2"; shift 2 ;;
        --debug) profile=(--profile dev); shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "mysql-decode-bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

scripts/services.sh start mysql
eval "$(scripts/services.sh env)"
root="$RTSYNC_SERVICES_DIR/mysql/root"
lib="$root/usr/lib/$(uname -m)-linux-gnu"
loader="$(find "$lib" -maxdepth 1 -name 'ld-linux*.so.*' | head -n1)"
[[ -x "$loader" && -x "$root/usr/bin/mysqlbinlog" ]] || {
    echo "mysql-decode-bench.sh: no mysqlbinlog in $root (scripts/services.sh install mysql)" >&2
    exit 1
}

export RTSYNC_BENCH_SERVER=mysql RTSYNC_BENCH_ROWS="$rows"
export RTSYNC_BENCH_BINLOG_CMD="$loader --library-path $lib $root/usr/bin/mysqlbinlog --no-defaults"
exec cargo bench "${profile[@]}" -p rtsync-source-mysql --bench throughput
