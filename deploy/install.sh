#!/usr/bin/env bash
# Installs Sluice as a systemd service on this host: the binary, a `sluice` user, the data
# directory, /etc/sluice/sluice.toml (kept if present) and the unit. Run as root from a checkout.
set -euo pipefail
if [[ $EUID -ne 0 ]]; then
    echo "install.sh: run as root" >&2
    exit 1
fi
here=$(cd "$(dirname "$0")" && pwd)
cargo build --release --manifest-path "$here/../Cargo.toml"
install -m 0755 "$here/../target/release/sluice" /usr/local/bin/sluice
id sluice >/dev/null 2>&1 || useradd --system --home-dir /var/lib/sluice --shell /usr/sbin/nologin sluice
install -d -o sluice -g sluice -m 0750 /var/lib/sluice /var/lib/sluice/data
install -d -m 0755 /etc/sluice
[[ -e /etc/sluice/sluice.toml ]] || install -m 0644 "$here/sluice.toml" /etc/sluice/sluice.toml
install -m 0644 "$here/sluice.service" /etc/systemd/system/sluice.service
systemctl daemon-reload
echo "installed. Next:"
echo "  sluice tune check --profile os/production --profile disk/nvme --device <data disk>"
echo "  sluice tune apply ... (records what it changes; sluice tune revert undoes it)"
echo "  systemctl enable --now sluice"
