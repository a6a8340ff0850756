#!/bin/sh
# build.sh: builds the sealgate network appliance, a Debian VM image.
#
#   build.sh rootfs DIR
#       debootstrap + Debian packages into DIR (slow: minutes). The result
#       depends on this file only; callers cache it under its hash
#       (build.sh hash), e.g. /var/cache/sealgate-appliance/HASH.
#   build.sh image ROOTFS SEALGATE_BINARY OUTDIR [APPLIANCE_CONF [FILES]]
#       copies ROOTFS, adds the sealgate binary, its unit, the unbound and
#       nftables configurations and the appliance's configuration service,
#       and writes OUTDIR/sealgate-appliance.img (ext4 root file system),
#       OUTDIR/vmlinuz and OUTDIR/initrd.img. APPLIANCE_CONF becomes
#       /etc/sealgate/appliance.conf (default: the documented example);
#       the tree of the folder FILES is copied over the image (e.g.
#       FILES/etc/sealgate/tls/key.pem for a certificate).
#   build.sh hash
#       prints the cache key of the rootfs.
#
# $APPLIANCE_ROUTER_NFT replaces deploy/nftables/router.nft.
# Runs as root (debootstrap, chroot). The Debian mirror is the one apt on
# this machine uses (read from /etc/apt at run time), or $APPLIANCE_MIRROR.
# Boot the result (no boot loader: direct kernel boot, as libvirt and
# qemu do with -kernel):
#   qemu-system-x86_64 -m 512 -nographic -kernel OUTDIR/vmlinuz \
#     -initrd OUTDIR/initrd.img -append 'root=/dev/vda rw console=ttyS0' \
#     -drive file=OUTDIR/sealgate-appliance.img,format=raw,if=virtio \
#     -netdev tap,id=lan,ifname=TAP,script=no,downscript=no \
#     -device virtio-net-pci,netdev=lan
set -eu

SUITE=${APPLIANCE_SUITE:-bookworm}
# netbase: /etc/protocols, which nft needs to read names such as ipv6-icmp.
# netbase: /etc/protocols, where nft finds names such as ipv6-icmp.
PACKAGES="linux-image-amd64 systemd systemd-sysv udev kmod netbase unbound dns-root-data nftables iproute2 ca-certificates"
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

die() { echo "build.sh: $*" >&2; exit 1; }

# mirror prints the Debian mirror apt uses here (deb822 .sources or
# one-line .list files).
mirror() {
	if [ -n "${APPLIANCE_MIRROR:-}" ]; then echo "$APPLIANCE_MIRROR"; return; fi
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk '/^URIs:/ {u=$2} /^Suites:/ {s=$0} /^$/ {if (u!="" && s ~ /'"$SUITE"'( |$)/) {print u; exit} u=""; s=""}
		     END {if (u!="" && s ~ /'"$SUITE"'( |$)/) print u}' "$f" | head -n1
	done | grep -v security | head -n1 | grep . && return
	cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk '$1=="deb" && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' | grep . ||
		die "no Debian mirror found in /etc/apt; set APPLIANCE_MIRROR"
}

need() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] || die "$1 not found: install the Debian package $2"; }

# cmd_hash covers what the rootfs is made of: the suite, the packages and
# the steps that make it (the image step is cheap and never cached).
cmd_hash() {
	sed -n '/^SUITE=/p; /^PACKAGES=/p; /^cmd_rootfs()/,/^}/p' "$HERE/build.sh" | sha256sum | cut -c1-16
}

cmd_rootfs() {
	dir=$1
	need debootstrap debootstrap
	[ "$(id -u)" -eq 0 ] || die "rootfs needs root (debootstrap, chroot)"
	m=$(mirror)
	# A build cut short may have left its mounts: never delete through them.
	for fs in proc dev sys; do umount "$dir.tmp/$fs" 2>/dev/null || true; done
	rm -rf --one-file-system "$dir.tmp"
	mkdir -p "$dir.tmp"
	debootstrap --variant=minbase "$SUITE" "$dir.tmp" "$m"
	# No service starts inside the chroot.
	printf '#!/bin/sh\nexit 101\n' >"$dir.tmp/usr/sbin/policy-rc.d"
	chmod 0755 "$dir.tmp/usr/sbin/policy-rc.d"
	mount -t proc proc "$dir.tmp/proc"
	mount --bind /dev "$dir.tmp/dev"
	mount -t sysfs sysfs "$dir.tmp/sys"
	trap 'umount "$dir.tmp/proc" "$dir.tmp/dev" "$dir.tmp/sys" 2>/dev/null || true' EXIT
	chroot "$dir.tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES
	chroot "$dir.tmp" apt-get clean
	umount "$dir.tmp/proc" "$dir.tmp/dev" "$dir.tmp/sys"
	trap - EXIT
	rm -f "$dir.tmp/usr/sbin/policy-rc.d"
	# The mirror of the build machine is no business of the appliance.
	rm -f "$dir.tmp/etc/apt/sources.list"
	rm -rf "$dir.tmp/var/lib/apt/lists"/*
	ls "$dir.tmp"/boot/vmlinuz-* >/dev/null || die "no kernel in the rootfs"
	rm -rf "$dir"
	mv "$dir.tmp" "$dir"
}

# put copies a file into the image with an owner and a mode.
put() {
	src=$1 dst=$2 mode=$3
	mkdir -p "$(dirname "$dst")"
	rm -f "$dst"
	cp "$src" "$dst"
	chmod "$mode" "$dst"
}

cmd_image() {
	rootfs=$1 bin=$2 out=$3 conf=${4:-$HERE/appliance.conf} files=${5:-}
	need mkfs.ext4 e2fsprogs
	[ -x "$bin" ] || die "$bin is not an executable sealgate binary"
	[ -d "$rootfs/boot" ] || die "$rootfs is not a root file system (build.sh rootfs)"
	mkdir -p "$out"
	stage=$out/stage
	rm -rf "$stage"
	cp -a "$rootfs" "$stage"
	trap 'rm -rf "$stage"' EXIT

	put "$bin" "$stage/usr/local/bin/sealgate" 0755
	put "$REPO/deploy/systemd/sealgate.service" "$stage/etc/systemd/system/sealgate.service" 0644
	put "$REPO/deploy/systemd/sealgate.sysusers" "$stage/usr/lib/sysusers.d/sealgate.conf" 0644
	put "$REPO/deploy/systemd/sealgate.env" "$stage/usr/share/sealgate/sealgate.env" 0644
	put "$REPO/deploy/unbound/unbound.conf" "$stage/etc/unbound/unbound.conf" 0644
	nft=${APPLIANCE_ROUTER_NFT:-$REPO/deploy/nftables/router.nft}
	[ -f "$nft" ] || die "$nft is missing"
	put "$nft" "$stage/usr/share/sealgate/router.nft" 0644
	put "$HERE/sealgate-appliance" "$stage/usr/local/sbin/sealgate-appliance" 0755
	put "$HERE/sealgate-appliance.service" "$stage/etc/systemd/system/sealgate-appliance.service" 0644
	put "$conf" "$stage/etc/sealgate/appliance.conf" 0600
	put "$HERE/appliance.conf" "$stage/usr/share/sealgate/appliance.conf.example" 0644
	printf '/dev/vda / ext4 defaults 0 1\n' >"$stage/etc/fstab.new" && mv "$stage/etc/fstab.new" "$stage/etc/fstab"
	echo sealgate >"$stage/etc/hostname.new" && mv "$stage/etc/hostname.new" "$stage/etc/hostname"

	if [ -n "$files" ]; then
		[ -d "$files" ] || die "$files is not a folder"
		cp -a "$files/." "$stage/"
	fi

	systemd-sysusers --root="$stage" "$stage/usr/lib/sysusers.d/sealgate.conf"
	chroot "$stage" chgrp sealgate /etc/sealgate
	chmod 0750 "$stage/etc/sealgate"
	systemctl --root="$stage" enable sealgate-appliance.service sealgate.service \
		nftables.service unbound.service systemd-networkd.service >/dev/null 2>&1 ||
		die "systemctl enable failed"
	# Errors of the ruleset and of the configuration reach the console.
	mkdir -p "$stage/etc/systemd/system/nftables.service.d"
	printf '[Service]\nStandardOutput=journal+console\nStandardError=journal+console\n' \
		>"$stage/etc/systemd/system/nftables.service.d/console.conf"
	# The VM has no other terminal than its serial console.
	systemctl --root="$stage" mask getty@tty1.service >/dev/null 2>&1 || true

	kernel=$(ls "$stage"/boot/vmlinuz-* | sort -V | tail -n1)
	initrd=$(ls "$stage"/boot/initrd.img-* | sort -V | tail -n1)
	cp "$kernel" "$out/vmlinuz"
	cp "$initrd" "$out/initrd.img"
	size=$(du -sm "$stage" | cut -f1)
	rm -f "$out/sealgate-appliance.img"
	mkfs.ext4 -q -F -L sealgate-root -d "$stage" "$out/sealgate-appliance.img" "$((size + 512))M"
	rm -rf "$stage"
	trap - EXIT
}

case "${1:-}" in
hash) cmd_hash ;;
rootfs) [ $# -eq 2 ] || die "usage: build.sh rootfs DIR"; cmd_rootfs "$2" ;;
image) [ $# -ge 4 ] || die "usage: build.sh image ROOTFS SEALGATE_BINARY OUTDIR [APPLIANCE_CONF [FILES]]"; cmd_image "$2" "$3" "$4" "${5:-}" "${6:-}" ;;
*) die "usage: build.sh hash | rootfs DIR | image ROOTFS SEALGATE_BINARY OUTDIR [APPLIANCE_CONF [FILES]]" ;;
esac
