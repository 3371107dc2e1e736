#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the tests marked `slurm` and for trying hydra/launcher=slurm
# before a real cluster: slurmctld, slurmd, and slurmdbd on a private MariaDB, so that `sacct` (which submitit
# polls) answers as on a real cluster. Needs root and Debian's packages:
#   apt-get install slurm-wlm slurmdbd mariadb-server munge
# Usage:
#   tests/helpers/slurm_cluster.sh start [DIR]   # config, state, database and logs in DIR (default /tmp/ftcompare-slurm)
#   export SLURM_CONF=DIR/slurm.conf             # then sbatch, squeue, scontrol, sacct talk to it
#   tests/helpers/slurm_cluster.sh stop [DIR]
# One partition `debug` with this machine's CPUs and memory; jobs are scheduled per CPU (two 1-CPU jobs run at
# once on 2 cores). A requeued job may start again 120 s after its requeue (Slurm's rule); tests shorten that
# with `scontrol update jobid=<id> StartTime=now`.
set -euo pipefail

action=${1:-}
dir=${2:-/tmp/ftcompare-slurm}
export SLURM_CONF="$dir/slurm.conf"
DB_PORT=3307 # MariaDB's and slurmdbd's ports, apart from any database or cluster already on the machine
DBD_PORT=6819

die() {
  echo "slurm_cluster: $*" >&2
  exit 1
}

wait_for() { # wait_for SECONDS COMMAND...: until the command succeeds
  local tries=$(($1 * 10))
  shift
  for _ in $(seq "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

munge_running() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  munge_running && return
  [ -f /etc/munge/munge.key ] || { mkdir -p /etc/munge && mungekey --create --keyfile=/etc/munge/munge.key; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged
  wait_for 5 munge_running || die "munged did not start (see /var/log/munge/munged.log)"
}

start_database() {
  if [ ! -d "$dir/mysql/mysql" ]; then
    mkdir -p "$dir/mysql"
    mariadb-install-db --user=root --datadir="$dir/mysql" --skip-test-db >"$dir/mysql-install.log" 2>&1 ||
      die "mariadb-install-db failed (see $dir/mysql-install.log)"
  fi
  mariadbd --user=root --datadir="$dir/mysql" --socket="$dir/mysql.sock" --pid-file="$dir/mysql.pid" \
    --bind-address=127.0.0.1 --port=$DB_PORT --log-error="$dir/mysql.log" &
  local sql=(mariadb --socket="$dir/mysql.sock")
  wait_for 20 "${sql[@]}" -e "select 1" || die "MariaDB did not start (see $dir/mysql.log)"
  "${sql[@]}" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
  cat >"$dir/slurmdbd.conf" <<EOF
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
AuthType=auth/munge
PidFile=$dir/slurmdbd.pid
LogFile=$dir/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$dir/slurmdbd.conf"
  SLURM_CONF="$dir/slurmdbd.conf" slurmdbd
  wait_for 20 sacctmgr -n list cluster || die "slurmdbd did not answer after 20 s (see $dir/slurmdbd.log)"
}

write_conf() {
  local host node
  host=$(hostname -s)
  node=$(slurmd -C | head -n 1) # this node as slurmd sees it: CPUs, cores, memory
  mkdir -p "$dir/state" "$dir/spool"
  cat >"$SLURM_CONF" <<EOF
ClusterName=ftcompare
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
ReturnToService=2
KillWait=30
MinJobAge=600
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

node_idle() { [ "$(sinfo -h -o %t)" = idle ]; }

start() {
  [ "$(id -u)" = 0 ] || die "needs root (slurmd runs jobs as their users)"
  for tool in slurmctld slurmd slurmdbd mariadbd munged; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install slurm-wlm slurmdbd mariadb-server munge)"
  done
  stop
  start_munge
  write_conf
  start_database
  slurmctld
  slurmd
  wait_for 30 node_idle || die "the node is not idle after 30 s (see $dir/slurmctld.log and $dir/slurmd.log)"
  echo "slurm_cluster: up; export SLURM_CONF=$SLURM_CONF"
}

stop() { # the daemons this script started in DIR, newest first; munged stays (it may serve others)
  local pidfile pid
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/slurmdbd.pid" "$dir/mysql.pid"; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    wait_for 10 bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

case "$action" in
start) start ;;
stop) stop ;;
*) die "usage: $0 start|stop [DIR]" ;;
esac
