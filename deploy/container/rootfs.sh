#!/bin/sh
# rootfs.sh OUT: lays out the image's file system in OUT from the source
# tree in the current directory: the static binary (CGO_ENABLED=0), the CA
# bundle of the build machine, a passwd and group naming the non-root user
# 65532, and /data for the embedded state. The Containerfile runs it in
# its build stage; an offline build runs it on the host (README,
# "Container").
set -eu
out=${1:?usage: rootfs.sh OUT}
version=${VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}
ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
mkdir -p "$out/etc/ssl/certs" "$out/data"
CGO_ENABLED=0 ${GO:-go} build -trimpath -ldflags "-s -w -X main.version=$version" -o "$out/sealgate" ./cmd/sealgate
cp "$ca" "$out/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/:/sbin/nologin\nsealgate:x:65532:65532:sealgate:/data:/sbin/nologin\n' >"$out/etc/passwd"
printf 'root:x:0:\nsealgate:x:65532:\n' >"$out/etc/group"
chmod 0700 "$out/data"
if [ "$(id -u)" -eq 0 ]; then chown 65532:65532 "$out/data"; fi
