#!/usr/bin/env bash
# Build local stand-ins for the official images compose.yml and the Dockerfile name
# (python:3.11-slim-bookworm, redis:7-bookworm) from Debian's archive, so the stack builds and
# runs with no container registry. Test support only: the Dockerfile keeps its official FROM.
# Usage: stand_in_images.sh WORKDIR   (skips images that exist; podman runs with CONTAINERS_CONF set)
set -euo pipefail
work=${1:?usage: $0 WORKDIR}
here=$(cd "$(dirname "$0")" && pwd)
python_tag=docker.io/library/python:3.11-slim-bookworm
redis_tag=docker.io/library/redis:7-bookworm
base_tag=localhost/taskqueue-test/bookworm-minbase

if podman image exists "$python_tag" && podman image exists "$redis_tag"; then exit 0; fi
mkdir -p "$work"
if ! podman image exists "$base_tag"; then
  rootfs="$work/rootfs"
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,redis-server,ca-certificates \
    bookworm "$rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log"; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import - "$base_tag" >/dev/null
  rm -rf "$rootfs"
fi

context="$work/context"
rm -rf "$context" && mkdir -p "$context"
cp "$here/redis-entrypoint.sh" "$context/"
# This machine reaches PyPI through a TLS proxy: the stand-in trusts the host's CA bundle, as
# builds on a developer's machine trust theirs. The shipped Dockerfile carries nothing of it.
cp /etc/ssl/certs/ca-certificates.crt "$context/"
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$context/pip.conf"

cat >"$context/Python.Containerfile" <<CONTAINERFILE
FROM $base_tag
# The official image's paths: /usr/local/bin/python and pip.
RUN python3 -m venv /usr/local
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY pip.conf /etc/pip.conf
ENV LANG=C.UTF-8
CMD ["python3"]
CONTAINERFILE

cat >"$context/Redis.Containerfile" <<CONTAINERFILE
FROM $base_tag
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod +x /usr/local/bin/docker-entrypoint.sh && mkdir -p /data && chown redis:redis /data
VOLUME /data
WORKDIR /data
ENTRYPOINT ["docker-entrypoint.sh"]
EXPOSE 6379
CMD ["redis-server"]
CONTAINERFILE

podman build -q --pull=never --network host -f "$context/Python.Containerfile" -t "$python_tag" "$context" >/dev/null
podman build -q --pull=never --network host -f "$context/Redis.Containerfile" -t "$redis_tag" "$context" >/dev/null
