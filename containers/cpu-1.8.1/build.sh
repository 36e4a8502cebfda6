#!/usr/bin/env bash
# Build the offline CPU image of the oldest torch line the trainer supports: Debian bullseye
# minbase (debootstrap, `docker import`; bullseye's python3 is 3.9) + a venv with the torch
# 1.8.1 wheel and numpy. The Dockerfile is containers/cpu/Dockerfile. No image registry is
# needed. Does nothing when an image built from this exact recipe already carries the tag.
# Run as root (debootstrap needs it).
#
#   containers/cpu-1.8.1/build.sh
#
# Environment (all optional):
#   TORCH_WHEEL    the torch wheel (cp39, bullseye's python3); downloaded from PyPI into
#                  /opt/wheels when missing [/opt/wheels/torch-1.8.1-cp39-cp39-manylinux1_x86_64.whl]
#   IMAGE_TAG      tag of the image [densenet-cpu:1.8.1] (= the lock entry cpu-1.8.1)
#   BASE_TAG       tag of the imported rootfs [densenet-base:bullseye-minbase]
#   DEBIAN_MIRROR  debootstrap mirror [the first Debian URI in this machine's apt sources]
#   FORCE=1        rebuild even when the recipe is unchanged
# Writes containers/cpu-1.8.1/build/image.json (tag, image ID, recipe hash, timings); the last line
# on stdout is the image ID.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
TORCH_WHEEL=${TORCH_WHEEL:-/opt/wheels/torch-1.8.1-cp39-cp39-manylinux1_x86_64.whl}
IMAGE_TAG=${IMAGE_TAG:-densenet-cpu:1.8.1}
BASE_TAG=${BASE_TAG:-densenet-base:bullseye-minbase}
SUITE=bullseye
dockerfile=$(cd "$(dirname "$0")/../cpu" && pwd)/Dockerfile # shared with the 2.13.0 image
# python3-venv brings ensurepip (pip comes with it); nothing else is needed at run time.
BASE_PACKAGES=python3,python3-venv
work=$here/build # git-ignored (.gitignore: build/): build context, rootfs, build record
t0=$(date +%s)

say() { echo "build.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

mirror_from_apt() {
    # deb822 (*.sources: "URIs: X") and one-line (*.list: "deb [opts] X suite") formats.
    {
        grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
        grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
            sed -E 's/\[[^]]*\] //' | awk '{print $2}'
    } | grep -E '/debian/?$' | head -n 1 || true # no match: the caller falls back
}

label_of() { # label_of IMAGE KEY -> the label's value, empty when the image is missing
    docker image inspect --format "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true
}

docker info >/dev/null 2>&1 || die "docker daemon not reachable (start dockerd first)"
if [ ! -f "$TORCH_WHEEL" ]; then
    # PyPI's torch 1.8.1 for cp39 is its CUDA 10.2 build (804 MB); it runs on a CPU.
    say "downloading $(basename "$TORCH_WHEEL") from PyPI"
    mkdir -p "$(dirname "$TORCH_WHEEL")"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.9 \
        --implementation cp --platform manylinux1_x86_64 -d "$(dirname "$TORCH_WHEEL")" \
        torch==1.8.1 || die "could not download torch 1.8.1"
fi
[ -f "$TORCH_WHEEL" ] || die "TORCH_WHEEL not found: $TORCH_WHEEL"
wheel_name=$(basename "$TORCH_WHEEL")

# The recipe hash names everything that decides the image's content; the wheel by its name
# (a wheel's name carries its version and build, and hashing 800 MB on every call is slow).
recipe=$(cat "$dockerfile" "$here/constraints.txt" "$here/build.sh" <(echo "$wheel_name") |
    sha256sum | cut -c1-16)
if [ "${FORCE:-0}" != 1 ] && [ "$(label_of "$IMAGE_TAG" org.densenet.recipe)" = "$recipe" ]; then
    say "$IMAGE_TAG is up to date (recipe $recipe), skipping the build"
    docker image inspect --format '{{.Id}}' "$IMAGE_TAG"
    exit 0
fi
mkdir -p "$work"

# 1. Base: a minimal Debian rootfs imported as an image (the step that replaces a registry pull).
base_recipe="$SUITE minbase $BASE_PACKAGES"
if [ "$(label_of "$BASE_TAG" org.densenet.base)" != "$base_recipe" ] || [ "${FORCE:-0}" = 1 ]; then
    command -v debootstrap >/dev/null || die "debootstrap not installed (apt-get install debootstrap)"
    mirror=${DEBIAN_MIRROR:-$(mirror_from_apt)}
    mirror=${mirror:-http://deb.debian.org/debian}
    rootfs=$work/rootfs
    rm -rf "$rootfs"
    say "debootstrap $SUITE from $mirror"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$mirror" \
        >"$work/debootstrap.log" 2>&1 || die "debootstrap failed, see $work/debootstrap.log"
    # Package caches and lists are dead weight in the image; the image never runs apt.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import \
        --change "LABEL org.densenet.base=\"$base_recipe\"" \
        --change 'CMD ["/bin/bash"]' - "$BASE_TAG" >/dev/null
    rm -rf "$rootfs"
    say "imported $BASE_TAG after $(($(date +%s) - t0)) s"
fi

# 2. The image: the context holds only the wheel, the constraints and the CA bundle pip needs to
# reach PyPI from inside the build (the host's bundle, which may carry a proxy's CA).
ctx=$work/context
rm -rf "$ctx" && mkdir -p "$ctx"
ln "$TORCH_WHEEL" "$ctx/$wheel_name" 2>/dev/null || cp "$TORCH_WHEEL" "$ctx/$wheel_name"
cp "$here/constraints.txt" "$ctx/"
cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
say "building $IMAGE_TAG (recipe $recipe)"
docker build -q -f "$dockerfile" --network host \
    --build-arg "BASE=$BASE_TAG" --build-arg "TORCH_WHEEL=$wheel_name" \
    --label "org.densenet.recipe=$recipe" --label "org.densenet.torch_wheel=$wheel_name" \
    -t "$IMAGE_TAG" "$ctx" >/dev/null
rm -rf "$ctx"
# Untagged leftovers of our builds only (the wheel stage, superseded images): never others.
docker image prune -f --filter "label=org.densenet.base" >/dev/null

id=$(docker image inspect --format '{{.Id}}' "$IMAGE_TAG")
build_s=$(($(date +%s) - t0))
cat >"$work/image.json.tmp" <<JSON
{"tag": "$IMAGE_TAG", "id": "$id", "recipe": "$recipe", "torch_wheel": "$wheel_name",
 "base": "$BASE_TAG", "built_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "build_s": $build_s}
JSON
mv "$work/image.json.tmp" "$work/image.json"
say "built $IMAGE_TAG in $build_s s"
echo "$id"
