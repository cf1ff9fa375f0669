#!/usr/bin/env bash
# One idempotent set-up for demo, test and bench: Debian packages, a kernel
# header tree BCC can compile against, and the project's venv.
# A second run only checks; it installs nothing that is already there.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: must run as root (sudo make …)" >&2
  exit 2
fi

export DEBIAN_FRONTEND=noninteractive

# Debian's python3-bpfcc is the real BCC; PyPI's "bcc" is an unrelated package.
pkgs=(python3-bpfcc python3-venv python3-pip iproute2 nftables tcpdump openssl
      nginx-light openssh-server vsftpd redis-server dnsmasq chrony
      postgresql mariadb-server memcached mosquitto exim4-daemon-light dovecot-imapd dovecot-pop3d
      ethtool vagrant  # vagrant: only to validate vagrant/Vagrantfile in the tests
      gcc libc6-dev    # the record formatter (zbanner_xdp/zbfmt.c), compiled once, loaded by ctypes
      python3-cryptography)  # tls certificates (--banner-bytes); the venv sees Debian's, like bcc
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    apt-get update -q >/dev/null
    apt_updated=1
  fi
  # The lab runs its own copies of nginx, sshd, postgres, … inside a namespace;
  # the host copies must not start on install, so refuse service starts while
  # apt runs (a Docker-style policy-rc.d), and restore whatever was there.
  local had_policy=0
  if [ -e /usr/sbin/policy-rc.d ]; then
    had_policy=1
    cp -p /usr/sbin/policy-rc.d /usr/sbin/policy-rc.d.zbanner-bak
  fi
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  local rc=0
  apt-get install -y -q --no-install-recommends "$@" >/tmp/zbanner-apt.log 2>&1 || rc=$?
  if [ "$had_policy" -eq 1 ]; then
    mv -f /usr/sbin/policy-rc.d.zbanner-bak /usr/sbin/policy-rc.d
  else
    rm -f /usr/sbin/policy-rc.d
  fi
  return $rc
}

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt_install "${missing[@]}" || { echo "setup: apt-get install failed, see /tmp/zbanner-apt.log" >&2; exit 2; }
fi

# Kernel headers: the real ones when the host has them, else the newest
# distribution header package merged into one tree BCC can use.
kver=$(uname -r)
if [ ! -e "/lib/modules/$kver/build/include" ]; then
  if ! ls -d /usr/src/linux-headers-*/ >/dev/null 2>&1; then
    arch=$(dpkg --print-architecture)
    echo "setup: no headers for $kver; installing distribution headers"
    apt_install "linux-headers-$kver" 2>/dev/null \
      || apt_install "linux-headers-$arch" 2>/dev/null \
      || apt_install linux-headers-generic \
      || { echo "setup: could not install any kernel headers" >&2; exit 2; }
  fi
  tree=$(/usr/bin/python3 "$here/zbanner_xdp/kheaders.py" --build)
  echo "setup: kernel headers at $tree"
fi

# The venv must see Debian's bcc, hence --system-site-packages from /usr/bin/python3.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import bcc' 2>/dev/null; then
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.installed
if [ ! -e "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing the project into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi

# Compile the record formatter now rather than in the first scan (cached by source hash).
.venv/bin/python -c 'from zbanner_xdp import fastfmt; import sys; sys.exit(fastfmt.load() is None)' \
  || echo "setup: warning: the C record formatter did not compile; using the slower numpy one" >&2
