#!/usr/bin/env bash
# A Debian minbase root filesystem for the project's hand-built images (the tests' step base
# image, the e2e harness's apache/kafka-compatible image): one debootstrap recipe for both.
#   tools/debian-rootfs.sh TARGET PACKAGE[,PACKAGE...]
# SUITE (default: the host's codename) picks the release. The mirror is the one this machine's
# apt uses (deb822 .sources or sources.list), never a host name written here. What an image does
# not need goes: package caches and lists, docs, man and info pages, locales, logs, debootstrap's
# own leftovers; the host's resolver and host name are not the image's business.
set -euo pipefail
target=${1:?usage: debian-rootfs.sh TARGET PACKAGE[,PACKAGE...]}
packages=${2:?usage: debian-rootfs.sh TARGET PACKAGE[,PACKAGE...]}
suite=${SUITE:-$(. /etc/os-release && echo "$VERSION_CODENAME")}

# The first apt source of type deb serving $suite (its security archive excepted).
mirror=$(
    {
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -e "$f" ] || continue
            awk -v suite="$suite" '
                function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ")) print uri; types = suites = uri = "" }
                /^[[:space:]]*$/ { flush(); next }
                /^Types:/ { sub(/^Types:[[:space:]]*/, ""); types = $0 }
                /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
                /^URIs:/ { uri = $2 }
                END { flush() }' "$f"
        done
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -e "$f" ] || continue
            awk -v suite="$suite" '$1 == "deb" && $0 !~ /\[/ && $3 == suite { print $2 }' "$f"
        done
    } | { grep -v -- '-security' || true; } | head -n 1
)
[ -n "$mirror" ] || { echo "debian-rootfs.sh: no apt source for $suite in /etc/apt" >&2; exit 1; }

rm -rf "$target"
mkdir -p "$(dirname "$target")"
umount_under() {  # debootstrap may leave /proc or /sys mounted in the target
    awk -v p="$1/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r \
        | while read -r m; do umount -l "$m" || true; done
}
trap 'umount_under "$target"' EXIT
debootstrap --variant=minbase --components=main --include="$packages" "$suite" "$target" "$mirror"
umount_under "$target"
rm -rf "$target"/var/cache/apt/archives/*.deb "$target"/var/lib/apt/lists/* \
    "$target"/usr/share/doc/* "$target"/usr/share/man/* "$target"/usr/share/info/* \
    "$target"/usr/share/locale/* "$target"/var/log/*.log "$target"/var/cache/debconf/*-old \
    "$target"/debootstrap
: >"$target/etc/resolv.conf"
echo localhost >"$target/etc/hostname"
