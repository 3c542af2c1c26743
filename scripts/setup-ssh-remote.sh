#!/usr/bin/env bash
# Prepares this machine for test/support/ssh-remote.ts, the OpenSSH server that stands for a rented
# GPU box: the server and tools it runs (installed only when missing) and the unix users the remote
# logs in as. Idempotent, silent and quick when everything is already there. Needs root.
set -euo pipefail

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
command -v socat >/dev/null || missing+=(socat)
command -v ip >/dev/null || missing+=(iproute2)
{ command -v unshare >/dev/null && command -v nsenter >/dev/null; } || missing+=(util-linux)

if [ "${#missing[@]}" -gt 0 ]; then
  # Forbid service starts during the install: the package's own sshd must not take the host's port 22.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
  fi
fi

for user in twinremote twinnopython; do
  if ! id -u "$user" >/dev/null 2>&1; then
    useradd --create-home --home-dir "/home/$user" --shell /bin/sh "$user"
    # "*" instead of useradd's "!": sshd without PAM refuses accounts whose password is locked ("!").
    usermod --password '*' "$user"
  fi
done

# sshd's privilege separation directory; /run is emptied at boot.
[ -d /run/sshd ] || install -d -m 0755 /run/sshd
