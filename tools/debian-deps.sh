#!/usr/bin/env bash
# Install the Debian packages the tests need, only those missing:
#   bird2     the BGP speaker and the router peer of the BGP tests
#   iproute2  network namespaces and veth pairs for the tests
#   openssl   self-signed certificates for the https check tests
#   etcd-server  a real etcd for the etcd discovery tests (also run inside the VM)
#   chromium  headless browser of the status page test
#   nginx-light  the reals of the benchmark harness's test (and of its figures)
# The kernel VM's own packages (qemu, busybox, ipvsadm) are installed by
# tools/ipvs-vm/run-in-ipvs-vm.sh. Without root or apt nothing is installed;
# the tests that need a missing package then say so (and fail under CI=true).
set -euo pipefail
want=()
command -v bird >/dev/null || want+=(bird2)
command -v ip >/dev/null || want+=(iproute2)
command -v openssl >/dev/null || want+=(openssl)
command -v etcd >/dev/null || want+=(etcd-server)
command -v chromium >/dev/null || want+=(chromium)
command -v nginx >/dev/null || want+=(nginx-light)
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "debian-deps: not installing ${want[*]} (needs root and apt-get)" >&2
    exit 0
fi
echo "debian-deps: apt-get install ${want[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2 || echo "debian-deps: apt-get update failed (continuing)" >&2
apt-get install -y -q --no-install-recommends "${want[@]}" >&2
# bird2, etcd-server and nginx-light start system daemons; the tests run their own.
if [[ " ${want[*]} " == *" bird2 "* ]]; then
    systemctl disable --now bird >/dev/null 2>&1 || true
fi
if [[ " ${want[*]} " == *" etcd-server "* ]]; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
fi
if [[ " ${want[*]} " == *" nginx-light "* ]]; then
    systemctl disable --now nginx >/dev/null 2>&1 || true
fi
# Likewise etcd-server starts a system etcd on the default ports.
if [[ " ${want[*]} " == *" etcd-server "* ]]; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
fi
if [[ " ${want[*]} " == *" nginx-light "* ]]; then
    systemctl disable --now nginx >/dev/null 2>&1 || true
fi
