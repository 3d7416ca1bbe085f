#!/usr/bin/env bash
# Start Redis, RabbitMQ and PostgreSQL on loopback if they are not running (idempotent; see ../shared/services.md).
set -uo pipefail

wait_for_port() {  # host port seconds
  local deadline=$((SECONDS + $3))
  until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "services: $1:$2 did not open within $3s" >&2; return 1; fi
    sleep 1
  done
}

if ! command -v redis-server >/dev/null || ! command -v rabbitmq-server >/dev/null || ! command -v pg_ctlcluster >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server rabbitmq-server postgresql >/dev/null
  fi
fi

if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
if ! rabbitmqctl status >/dev/null 2>&1; then
  rabbitmq-server -detached
fi
if command -v pg_ctlcluster >/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
fi
wait_for_port 127.0.0.1 6379 30 && wait_for_port 127.0.0.1 5672 90 && wait_for_port 127.0.0.1 5432 60
