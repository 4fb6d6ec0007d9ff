#!/bin/sh
# Runs inside the test-host image tree (chroot) after debootstrap, as root.
# Everything a test host is, apart from the Debian packages, is set here.
# Changing this file changes the image recipe hash, so the image is rebuilt.
set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

# Services must not start inside the chroot while packages install.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d

apt-get update -qq
apt-get install -y -qq --no-install-recommends linux-image-amd64 linux-headers-amd64 initramfs-tools >/dev/null
apt-get install -y -qq --no-install-recommends dkms zfs-dkms zfsutils-linux >/dev/null

# The ZFS module must exist for the guest kernel (dkms builds for the kernels with headers).
kver=$(find /lib/modules -mindepth 1 -maxdepth 1 -printf "%f\n" | sort -V | tail -n 1)
if ! find "/lib/modules/$kver" -name 'zfs.ko*' | grep -q .; then
  dkms autoinstall -k "$kver"
fi
find "/lib/modules/$kver" -name 'zfs.ko*' | grep -q . || { echo "zfs.ko was not built for $kver" >&2; exit 1; }
depmod "$kver"
update-initramfs -u -k "$kver" >/dev/null

rm -f /usr/sbin/policy-rc.d
apt-get clean
rm -rf /var/lib/apt/lists/*

# Root file system and network: QEMU user-mode networking, fixed address, no default
# route, so a test host reaches nothing but the host's loopback forwards at 10.0.2.2.
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' > /etc/fstab
mkdir -p /etc/systemd/network
cat > /etc/systemd/network/10-user-net.network <<'NET'
[Match]
Name=en* eth*

[Network]
Address=10.0.2.15/24
LinkLocalAddressing=no
IPv6AcceptRA=no
NET
systemctl enable systemd-networkd.service >/dev/null 2>&1
printf '127.0.0.1 localhost\n' > /etc/hosts
echo testhost > /etc/hostname

# Root login by the key given on the kernel command line (stratum.sshkey=<base64>),
# so the cached image holds no key; the host name comes the same way.
cat > /usr/local/sbin/testhost-init <<'INIT'
#!/bin/sh
set -eu
for word in $(cat /proc/cmdline); do
  case "$word" in
    stratum.sshkey=*)
      mkdir -p /root/.ssh && chmod 700 /root/.ssh
      echo "${word#stratum.sshkey=}" | base64 -d > /root/.ssh/authorized_keys
      chmod 600 /root/.ssh/authorized_keys ;;
    stratum.hostname=*)
      hostname "${word#stratum.hostname=}"
      echo "${word#stratum.hostname=}" > /etc/hostname
      printf '127.0.0.1 localhost %s\n' "${word#stratum.hostname=}" > /etc/hosts ;;
  esac
done
INIT
chmod 755 /usr/local/sbin/testhost-init
cat > /etc/systemd/system/testhost-init.service <<'UNIT'
[Unit]
Description=Test host key and name from the kernel command line
Before=ssh.service
After=local-fs.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/testhost-init

[Install]
WantedBy=multi-user.target
UNIT
systemctl enable testhost-init.service ssh.service >/dev/null 2>&1
sed -i 's/^#\?UseDNS.*/UseDNS no/' /etc/ssh/sshd_config
grep -q '^UseDNS' /etc/ssh/sshd_config || echo 'UseDNS no' >> /etc/ssh/sshd_config

# NFS: /srv/export for this host and its peers (through forwards, hence insecure ports).
mkdir -p /srv/export
echo '/srv/export *(rw,sync,no_subtree_check,no_root_squash,insecure)' > /etc/exports
systemctl enable nfs-server.service >/dev/null 2>&1

# Nothing periodic in a short-lived test host.
systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
  zfs-scrub-monthly@.timer zfs-trim-monthly@.timer >/dev/null 2>&1 || true
echo 'root:*' | chpasswd -e
