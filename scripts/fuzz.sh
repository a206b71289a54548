#!/usr/bin/env bash
# The differential CDC fuzzer (tests/cdc_fuzz.rs) for a long soak: N rounds of random workload,
# SIGKILLs and source-vs-Delta comparison per source. CI runs a few rounds as part of
# scripts/test.sh; this runs as many as asked. Starts PostgreSQL, MariaDB and Oracle MySQL if
# they are not running (and leaves them running).
#
# usage: scripts/fuzz.sh [--rounds N] [--seed S] [--source postgres|mysql|mariadb|oracle_mysql|sqlserver] [--no-key-changes]
#   --rounds N          rounds per source (default 100)
#   --seed S            replay a seed (default: a random one, printed)
#   --source S          only this source (default: all, one after the other; mysql: both
#                       MySQL-family servers; sqlserver: the SQL Server CDC simulator behind its
#                       TDS endpoint, since no SQL Server runs here)
#   --no-key-changes    no primary-key changes (isolates other failures from key-change ones)
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=100
seed=""
source=""
no_key_changes=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        --source) source="$2"; shift 2 ;;
        --no-key-changes) no_key_changes=1; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "fuzz.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$source" in
    "") filter="" ;;
    postgres|mysql|sqlserver) filter="${source}_" ;;
    mariadb|oracle_mysql) filter="mysql_random_workload_through_kills::$source" ;;
    *) echo "fuzz.sh: --source is postgres, mysql, mariadb, oracle_mysql or sqlserver" >&2; exit 2 ;;
esac

scripts/services.sh install venv
scripts/services.sh start postgres mariadb mysql
eval "$(scripts/services.sh env)"

export RTSYNC_FUZZ_ROUNDS="$rounds"
if [[ -n "$seed" ]]; then export RTSYNC_FUZZ_SEED="$seed"; fi
if [[ -n "$no_key_changes" ]]; then export RTSYNC_FUZZ_NO_KEY_CHANGES=1; fi
exec cargo test --test cdc_fuzz -- --nocapture --test-threads=1 $filter
