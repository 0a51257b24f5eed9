#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, to run the workflow through the slurm profile
# (tests/test_workflow.py does; so can you). Needs root and apt (Debian/Ubuntu).
#
#   workflow/scripts/slurm_single_node.sh start   # install if missing, configure, start, wait
#   workflow/scripts/slurm_single_node.sh env     # print `export SLURM_CONF=...` for clients
#   workflow/scripts/slurm_single_node.sh stop    # end its jobs' processes, stop its daemons
#
# Everything lives in $SLURM_STATE_DIR (default /tmp/trpo-bench-slurm): slurm.conf, spool,
# logs, pid files. Nothing under /etc is changed (clients find the config through
# SLURM_CONF); munged reuses a munged already running, else this script starts one.
# The config: one node with CPUs=2 (NODE_CPUS); proctrack/cgroup where SLURM's cgroup v1
# plugin can use a freezer hierarchy here (SLURM then ends every process of a job at its end,
# also those that left its process tree), else proctrack/linuxproc (PROCTRACK=linuxproc forces
# it), which loses a process whose parent died: `stop` ends those (every process that carries
# this cluster's job environment); task/none; no accounting database
# (accounting_storage/none: sacct cannot answer, so the slurm profile uses squeue);
# MinJobAge=400 s so that squeue still shows finished jobs when the executor polls.
#
# Exit status of `start`: 0 running; 3 cannot be set up here (not root, no apt, install
# failed): the reason is printed on stderr, for a test to skip on.
set -euo pipefail

STATE="${SLURM_STATE_DIR:-/tmp/trpo-bench-slurm}"
CONF="$STATE/slurm.conf"
CLUSTER=trpobench
NODE_CPUS="${NODE_CPUS:-2}"
CTLD_PORT="${SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${SLURMD_PORT:-6818}"

cannot() {
    echo "slurm_single_node: cannot set up SLURM here: $*" >&2
    exit 3
}

install_slurm() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null && return 0
    [ "$(id -u)" = 0 ] || cannot "not root (installing slurm-wlm and munge needs root)"
    command -v apt-get >/dev/null || cannot "no apt-get to install slurm-wlm and munge"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends
        slurm-wlm munge)
    "${apt[@]}" >"$STATE/apt.log" 2>&1 \
        || { apt-get update >>"$STATE/apt.log" 2>&1 && "${apt[@]}" >>"$STATE/apt.log" 2>&1; } \
        || cannot "apt-get install slurm-wlm munge failed (log: $STATE/apt.log)"
}

write_conf() {
    local proctrack="$1" host mem
    host="$(hostname -s)"
    # Memory offered to jobs: 80% of what is available now, in MB.
    mem="$(awk '/MemAvailable/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)"
    mkdir -p "$STATE/ctld" "$STATE/d" "$STATE/log"
    cat >"$CONF" <<EOF
ClusterName=${CLUSTER}
SlurmctldHost=${host}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=${STATE}/ctld
SlurmdSpoolDir=${STATE}/d
SlurmctldPidFile=${STATE}/slurmctld.pid
SlurmdPidFile=${STATE}/slurmd.pid
SlurmctldLogFile=${STATE}/log/slurmctld.log
SlurmdLogFile=${STATE}/log/slurmd.log
ProctrackType=proctrack/${proctrack}
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
MinJobAge=400
SlurmctldParameters=enable_configless
SlurmdTimeout=60
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${NODE_CPUS} RealMemory=${mem} State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    rm -f "$STATE/cgroup.conf"
    if [ "$proctrack" = cgroup ]; then
        # Read beside slurm.conf (and served to the configless slurmd). Tracking only: no
        # limits on cores or memory.
        cat >"$STATE/cgroup.conf" <<EOF
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF
    fi
}

# cgroup where SLURM's cgroup v1 plugin can track jobs here (a writable freezer hierarchy and
# the plugin installed), else linuxproc.
proctrack_here() {
    local freezer=/sys/fs/cgroup/freezer
    if [ "${PROCTRACK:-}" != linuxproc ] && [ -w "$freezer/cgroup.procs" ] \
        && compgen -G "/usr/lib/*/slurm*/proctrack_cgroup.so" >/dev/null; then
        echo cgroup
    else
        echo linuxproc
    fi
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0 # a working munged is already running
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    [ -s /etc/munge/munge.key ] || mungekey --create >/dev/null 2>&1 \
        || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
    chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge 2>/dev/null || true
    chmod 0400 /etc/munge/munge.key
    local pidfile=/run/munge/munged.pid
    if id munge >/dev/null 2>&1; then
        su -s /bin/sh munge -c "munged" || cannot "munged did not start"
    else
        munged --force || cannot "munged did not start"
    fi
    for _ in $(seq 50); do
        [ -s "$pidfile" ] && break
        sleep 0.1
    done
    [ -s "$pidfile" ] && cp "$pidfile" "$STATE/munged.started.pid"
}

start() {
    mkdir -p "$STATE"
    install_slurm
    [ "$(id -u)" = 0 ] || cannot "not root (slurmd must run as root)"
    if [ -s "$STATE/slurmctld.started.pid" ] && kill -0 "$(cat "$STATE/slurmctld.started.pid")" 2>/dev/null; then
        echo "slurm_single_node: already running (state in $STATE)"
        return 0
    fi
    start_munge
    export SLURM_CONF="$CONF"
    local proctrack
    proctrack="$(proctrack_here)"
    if ! start_daemons "$proctrack"; then
        local up=no
        if [ "$proctrack" = cgroup ]; then
            echo "slurm_single_node: proctrack/cgroup did not come up; using proctrack/linuxproc" >&2
            stop_daemons slurmd slurmctld
            start_daemons linuxproc && up=yes
        fi
        if [ "$up" = no ]; then
            echo "slurm_single_node: the node did not come up; logs:" >&2
            tail -n 20 "$STATE/log/"*.log "$STATE/log/"*.out >&2 || true
            stop
            cannot "slurmctld/slurmd did not reach an idle node within 30 s"
        fi
    fi
    echo "slurm_single_node: node idle (proctrack/$(cat "$STATE/proctrack")); export SLURM_CONF=$CONF"
}

# Start slurmctld and slurmd with ProctrackType=proctrack/$1; 0 once the node is idle.
start_daemons() {
    write_conf "$1"
    echo "$1" >"$STATE/proctrack"
    # -D: stay in the foreground (of this background job); -c: clear old state; -i: ignore it.
    slurmctld -D -c -i -f "$CONF" >"$STATE/log/slurmctld.out" 2>&1 &
    echo $! >"$STATE/slurmctld.started.pid"
    # Configless slurmd: it fetches the config from slurmctld and links it at
    # /run/slurm/conf, where commands inside jobs find it (Snakemake's jobstep executor drops
    # SLURM_CONF from the environment of the `srun` it runs).
    slurmd -D --conf-server "127.0.0.1:${CTLD_PORT}" >"$STATE/log/slurmd.out" 2>&1 &
    echo $! >"$STATE/slurmd.started.pid"
    for _ in $(seq 150); do
        state="$(sinfo -h -o %T 2>/dev/null | head -n1 || true)"
        if [ "$state" = idle ]; then
            return 0
        fi
        # slurmd exits at once when its proctrack plugin cannot start
        kill -0 "$(cat "$STATE/slurmd.started.pid")" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}

# The processes that this cluster's jobs started and that are still running: those whose
# environment names this cluster and a job (a process that outlived its job under
# proctrack/linuxproc, e.g. a Snakemake job wrapper, is among them). One such cluster runs here
# at a time (its ports are fixed).
job_processes() {
    local env_file pid
    for env_file in /proc/[0-9]*/environ; do
        pid="${env_file#/proc/}"
        pid="${pid%/environ}"
        [ "$pid" = $$ ] && continue
        grep -qzx "SLURM_CLUSTER_NAME=${CLUSTER}" "$env_file" 2>/dev/null || continue
        grep -qz "^SLURM_JOB_ID=" "$env_file" 2>/dev/null || continue
        echo "$pid"
    done
}

# End the jobs' processes that are left: SIGTERM, up to 5 s to exit, then SIGKILL.
end_job_processes() {
    local pids
    pids="$(job_processes)"
    [ -n "$pids" ] || return 0
    echo "slurm_single_node: ending $(echo "$pids" | wc -w) process(es) left by jobs:" $pids
    # shellcheck disable=SC2086
    kill $pids 2>/dev/null || true
    for _ in $(seq 50); do
        pids="$(for p in $pids; do if kill -0 "$p" 2>/dev/null; then echo "$p"; fi; done)"
        [ -n "$pids" ] || return 0
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
}

stop() {
    if [ -s "$STATE/slurmctld.started.pid" ] && kill -0 "$(cat "$STATE/slurmctld.started.pid")" 2>/dev/null; then
        # The jobs first (SLURM ends their processes), then what outlived them.
        SLURM_CONF="$CONF" scancel --full --quiet --state=PENDING,RUNNING,SUSPENDED --user root \
            >/dev/null 2>&1 || SLURM_CONF="$CONF" scancel --quiet --user root >/dev/null 2>&1 || true
        for _ in $(seq 50); do
            [ -z "$(SLURM_CONF="$CONF" squeue -h -t R,CG 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    end_job_processes
    stop_daemons slurmd slurmctld munged
    echo "slurm_single_node: stopped"
}

stop_daemons() {
    # Only the daemons named that this script started, by their recorded process ids.
    local name pid pid_file
    for name in "$@"; do
        pid_file="$STATE/$name.started.pid"
        [ -s "$pid_file" ] || continue
        pid="$(cat "$pid_file")"
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$pid_file"
    done
    # The (empty) cgroups slurmd made for its jobs; rmdir leaves any that still hold a process.
    if [[ " $* " == *" slurmd "* ]]; then
        find /sys/fs/cgroup/*/"slurm_$(hostname -s)" -depth -type d -exec rmdir {} + 2>/dev/null \
            || true
    fi
    # slurmd's link to its config cache (see start), if it points into our state folder.
    if [ -L /run/slurm/conf ] && [[ "$(readlink /run/slurm/conf)" == "$STATE"/* ]]; then
        rm -f /run/slurm/conf
    fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
env) echo "export SLURM_CONF=$CONF" ;;
*)
    echo "usage: $0 start|stop|env" >&2
    exit 2
    ;;
esac
