#!/usr/bin/env bash
# Several "hosts" on one machine: network namespaces with their own eth0 (veth on a bridge in a
# switch namespace), address 10.201.0.<i>/24 and hostname h<prefix><i>, and mpiexec across them.
# Needs root (ip netns) and iproute2. Traffic between hosts crosses the veth links (UCX over tcp on
# eth0; MPI itself over ob1 tcp/vader), never shared memory between hosts.
#
#   netns-hosts.sh up N                  create N hosts (idempotent)
#   netns-hosts.sh down                  remove every host, the switch and their /etc/hosts lines
#   netns-hosts.sh run N R [--expect-rx BYTES] -- PROGRAM [ARGS...]
#        up N, then mpiexec -n N*R (R ranks per host) of PROGRAM from inside host 1, then down.
#        --expect-rx: fail unless every host's eth0 received at least BYTES during the run.
#        Exit code: the program's (or 5 when the rx check fails).
#
# Environment: STRATA_NETNS_PREFIX (default "stn"), STRATA_NETNS_SUBNET (default 10.201.0).
# On real nodes none of this is needed: see launch/README.md (hostfile or srun).
set -euo pipefail

prefix="${STRATA_NETNS_PREFIX:-stn}"
subnet="${STRATA_NETNS_SUBNET:-10.201.0}"
sw="${prefix}-sw"
tag="# strata-netns ${prefix}"
lock="/run/strata-netns-${prefix}.lock"

die() { echo "netns-hosts: $*" >&2; exit 2; }
host() { echo "${prefix}h$1"; }

up() {
    local n=$1
    [ "$(id -u)" -eq 0 ] || die "needs root (ip netns)"
    command -v ip >/dev/null || die "ip not found: install iproute2"
    ip netns list | grep -qw "$sw" || {
        ip netns add "$sw"
        ip -n "$sw" link add br0 type bridge
        ip -n "$sw" link set lo up
        ip -n "$sw" link set br0 up
    }
    for i in $(seq 1 "$n"); do
        local h; h=$(host "$i")
        ip netns list | grep -qw "$h" && continue
        ip netns add "$h"
        ip link add "v-$h" type veth peer name eth0 netns "$h"
        ip link set "v-$h" netns "$sw"
        ip -n "$sw" link set "v-$h" master br0 up
        ip -n "$h" link set lo up
        ip -n "$h" addr add "$subnet.$i/24" dev eth0
        ip -n "$h" link set eth0 up
        grep -q " $h $tag\$" /etc/hosts || echo "$subnet.$i $h $tag" >> /etc/hosts
    done
}

down() {
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^(${prefix}h[0-9]+|${sw})\$" || true); do
        ip netns del "$ns"
    done
    # /etc/hosts may be a bind mount (containers): rewrite in place, never replace the file.
    local kept; kept=$(grep -v " $tag\$" /etc/hosts || true)
    printf '%s\n' "$kept" > /etc/hosts
}

rx_bytes() { ip netns exec "$(host "$1")" cat /sys/class/net/eth0/statistics/rx_bytes; }

run() {
    local n=$1 per=$2; shift 2
    local expect_rx=0
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        case "$1" in
            --expect-rx) expect_rx=$2; shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
    [ "${1:-}" = "--" ] || die "usage: run N R [--expect-rx BYTES] -- PROGRAM [ARGS...]"
    shift
    exec 9>"$lock"
    flock -w 300 9 || die "another run holds $lock"
    work=$(mktemp -d)  # global: the EXIT trap runs after this function returns
    trap 'down; rm -rf "$work"' EXIT
    down
    up "$n"
    # rsh agent: Open MPI starts orted on "host" through it, inside that namespace, with that
    # namespace's own hostname (UTS namespace): distinct hostnames keep vader segments apart.
    cat > "$work/nsrsh" <<AGENT
#!/bin/bash
h=\$1; shift
exec ip netns exec "\$h" unshare --uts /bin/sh -c "hostname \$h; \$*"
AGENT
    chmod +x "$work/nsrsh"
    : > "$work/hostfile"
    for i in $(seq 1 "$n"); do echo "$(host "$i") slots=$per" >> "$work/hostfile"; done
    local before=()
    for i in $(seq 1 "$n"); do before+=("$(rx_bytes "$i")"); done

    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export OMPI_MCA_plm_rsh_agent="$work/nsrsh"
    export OMPI_MCA_oob_tcp_if_include="$subnet.0/24" OMPI_MCA_btl_tcp_if_include="$subnet.0/24"
    export OMPI_MCA_hwloc_base_binding_policy=none OMPI_MCA_mpi_yield_when_idle=1
    export OMPI_MCA_rmaps_base_oversubscribe=1
    local h1; h1=$(host 1)
    local rc=0
    # mpiexec itself runs inside host 1: the root namespace has no address on the subnet.
    ip netns exec "$h1" unshare --uts /bin/sh -c "hostname $h1; exec mpiexec -n $((n * per)) \
        --hostfile $work/hostfile --mca pml ob1 --mca btl self,vader,tcp \
        -x UCX_TLS=tcp -x UCX_NET_DEVICES=eth0 -x UCX_TCP_CM_REUSEADDR=y $(printf '%q ' "$@")" \
        || rc=$?
    for i in $(seq 1 "$n"); do
        local got=$(( $(rx_bytes "$i") - before[i - 1] ))
        echo "netns-hosts: $(host "$i") eth0 received $got bytes"
        if [ "$got" -lt "$expect_rx" ]; then
            echo "netns-hosts: $(host "$i") received less than $expect_rx bytes: traffic did not" \
                 "cross the virtual links" >&2
            [ "$rc" -ne 0 ] || rc=5
        fi
    done
    return "$rc"
}

case "${1:-}" in
    up) [ $# -eq 2 ] || die "usage: up N"; up "$2" ;;
    down) down ;;
    run) shift; [ $# -ge 3 ] || die "usage: run N R [--expect-rx BYTES] -- PROGRAM [ARGS...]"; run "$@" ;;
    *) die "usage: $0 up N | down | run N R [--expect-rx BYTES] -- PROGRAM [ARGS...]" ;;
esac
