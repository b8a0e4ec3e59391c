#!/usr/bin/env bash
# Makes the image `debian:bookworm-slim` locally from Debian's packages, for machines that
# reach Debian's package mirror but no image registry. Where a registry is reachable this
# script is not needed: the Dockerfiles name the same image, which Docker then pulls.
#
#   deploy/docker/build-base-image.sh            # skips if the image exists
#   BASE_IMAGE=debian:bookworm-slim DEBIAN_MIRROR=<url> deploy/docker/build-base-image.sh
#
# How: debootstrap --variant=minbase bookworm into a temporary directory, trim it the way
# Debian's own slim image is trimmed (no docs, man pages or locales; no apt lists), and
# `docker import` it with the same command and environment. The mirror is the host's own
# apt source (deb822 or one-line format) unless DEBIAN_MIRROR is set; the image's apt
# sources are the host's Debian sources, so `apt-get` inside the image reaches the mirror
# the host does. Needs root (debootstrap) and Docker.
set -euo pipefail

image="${BASE_IMAGE:-debian:bookworm-slim}"
suite="bookworm"

if ! command -v docker >/dev/null 2>&1; then
  echo "build-base-image: docker is not installed" >&2
  exit 1
fi
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "build-base-image: $image exists; nothing to do"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "build-base-image: debootstrap needs root; run with sudo" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "build-base-image: installing debootstrap from Debian's packages" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
fi

host_sources=/etc/apt/sources.list.d/debian.sources
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ] && [ -f "$host_sources" ]; then
  # The first URIs line of a deb822 stanza whose archive is Debian's main one.
  mirror="$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$host_sources")"
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror="$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)"
fi
if [ -z "$mirror" ]; then
  echo "build-base-image: no Debian mirror found in the host's apt sources; set DEBIAN_MIRROR" >&2
  exit 1
fi

rootfs="$(mktemp -d /tmp/notary-base-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "build-base-image: debootstrap $suite (minbase) from $mirror" >&2
debootstrap --variant=minbase --components=main "$suite" "$rootfs" "$mirror" >/tmp/notary-debootstrap.log 2>&1 \
  || { tail -20 /tmp/notary-debootstrap.log >&2; exit 1; }

# Trim like Debian's slim image: dpkg skips docs, man pages and locales from now on,
# and what debootstrap already installed of them goes.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
CFG
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda}/* 2>/dev/null || true
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
# apt in a container: no recommends, no caches kept.
cat >"$rootfs/etc/apt/apt.conf.d/docker-slim" <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
if [ -f "$host_sources" ]; then
  cp "$host_sources" "$rootfs/etc/apt/sources.list.d/debian.sources"
  rm -f "$rootfs/etc/apt/sources.list"
else
  printf 'deb %s %s main\ndeb %s %s-updates main\n' "$mirror" "$suite" "$mirror" "$suite" >"$rootfs/etc/apt/sources.list"
fi
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/var/log/*.log "$rootfs"/tmp/* "$rootfs"/debootstrap 2>/dev/null || true
: >"$rootfs/etc/machine-id"

echo "build-base-image: importing as $image" >&2
tar -C "$rootfs" --numeric-owner -c . | docker import \
  --change 'CMD ["bash"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --message "debootstrap --variant=minbase $suite, trimmed like debian:$suite-slim" \
  - "$image" >/dev/null
docker image ls "$image"
