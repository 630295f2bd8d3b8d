# shellcheck shell=bash
# Shared by the scripts in this folder: where the environments live and how to run in them.
#
# Two ways to get a Python >= 3.14.2 (what current Home Assistant needs):
#   plain  - the machine has one (the devcontainer): venvs under the cache directory.
#   chroot - it has none (Debian 12): a Debian sid root file system made with mmdebstrap,
#            cached outside the clone, entered through a private mount and PID namespace so
#            that no mount and no process outlives a command.
# The venvs are named the same in both modes; code in the project never knows which it got.

set -euo pipefail

DX_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DX_CACHE="${DX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/data-exchange}"
# Build products shared between runs (compiled nodes); visible at the same path inside the root.
DX_WORK="$DX_CACHE/work"

# The root's recipe. Changing anything here changes the key, so the root is rebuilt.
DX_SUITE="sid"
DX_MIRROR="http://deb.debian.org/debian"
DX_PACKAGES="python3.14,python3.14-venv,python3.14-dev,ca-certificates,gcc,g++,libc6-dev,procps"
# Firmware checks (tests/firmware/test_esp32_build.py): a 32-bit bare-metal C++ toolchain
# with the ESP32's type model (uint32_t is long unsigned int, long is 32 bits). Debian sid
# ships its C++ library with picolibc (bookworm's was libstdc++-arm-none-eabi-newlib).
# Added to the existing root by scripts/setup (apt-get), so a change here installs packages
# instead of rebuilding the root under running tests.
DX_FIRMWARE_PACKAGES="gcc-arm-none-eabi libstdc++-arm-none-eabi picolibc-arm-none-eabi"
# Browser tests (tests/browser/): Debian's Chromium, driven by Playwright for Python (the
# dependency group "browser" in pyproject.toml), which never downloads a browser of its own.
# Added to the existing root the same way.
DX_BROWSER_PACKAGES="chromium fonts-dejavu-core"
# What the integrations of scripts/develop's configuration (config/configuration.yaml) run
# or load besides Python packages: ffmpeg (ffmpeg, tts, stream), libpcap (the DHCP
# watcher), libturbojpeg (camera snapshots). Without them every start logs errors.
DX_DEVELOP_PACKAGES="ffmpeg libpcap0.8t64 libturbojpeg0"

dx_log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

dx_required_python() {
    sed -n 's/^requires-python = ">=\([0-9.]*\)".*/\1/p' "$DX_REPO/pyproject.toml"
}

# A python3.14 on this machine that satisfies requires-python, or nothing.
dx_host_python() {
    local want candidate
    want="$(dx_required_python)"
    for candidate in python3.14 python3; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c "import sys; want=tuple(map(int,'$want'.split('.'))); sys.exit(0 if sys.version_info[:3] >= want else 1)" 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 0
}

dx_mode() {
    if [ -n "${DX_MODE:-}" ]; then
        echo "$DX_MODE"
    elif [ -n "$(dx_host_python)" ]; then
        echo plain
    else
        echo chroot
    fi
}

dx_root_key() {
    printf '%s\n' "$DX_SUITE" "$DX_MIRROR" "$DX_PACKAGES" "root-v1" | sha256sum | cut -c1-16
}

dx_root() { echo "$DX_CACHE/root-$(dx_root_key)"; }

# Where the venvs live, as seen by the commands that run in the environment.
dx_venv_base() {
    if [ "$(dx_mode)" = plain ]; then echo "$DX_CACHE/venvs"; else echo "/opt/data-exchange"; fi
}

# dx_run [--] CMD...: run CMD in the environment, in the current directory (which must be
# inside the repository or the cache). The test venv's bin comes first on PATH, the ESPHome
# venv is reachable as $DX_ESPHOME.
dx_run() {
    [ "${1:-}" = "--" ] && shift
    local base
    base="$(dx_venv_base)"
    if [ "$(dx_mode)" = plain ]; then
        env PATH="$base/test/bin:$PATH" VIRTUAL_ENV="$base/test" DX_ESPHOME="$base/esphome/bin/esphome" \
            DX_WORK="$DX_WORK" "$@"
        return
    fi
    local root cwd
    root="$(dx_root)"
    cwd="$(pwd)"
    if [ ! -f "$root/.complete" ]; then
        # Mount points made in a missing root would later make setup nest the new root in it.
        dx_log "the Debian root $root is missing or incomplete: run scripts/setup first"
        return 1
    fi
    mkdir -p "$DX_WORK"
    # PID 1 of the new namespace is this shell; when it ends, the kernel kills whatever is
    # left inside (nodes, Home Assistant), and --kill-child covers the case where unshare
    # itself is killed. The mounts exist only in the private mount namespace.
    unshare --mount --pid --fork --kill-child --propagation private -- \
        /bin/sh -c '
            root="$1"; repo="$2"; work="$3"; cwd="$4"; base="$5"; shift 5
            # /tmp first: the repository or the cache may live under it.
            mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
            mkdir -p "$root$repo" "$root$work"
            mount --bind "$repo" "$root$repo"
            mount --bind "$work" "$root$work"
            mount -t proc proc "$root/proc"
            mount --rbind /dev "$root/dev"
            cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
            chroot "$root" /usr/bin/env -i \
                HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" CI="${CI:-}" \
                PATH="$base/test/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
                VIRTUAL_ENV="$base/test" DX_ESPHOME="$base/esphome/bin/esphome" DX_WORK="$work" \
                DX_TEST_ARGS="${DX_TEST_ARGS:-}" DX_ARTIFACTS="${DX_ARTIFACTS:-}" \
                DX_MODEL_EXAMPLES="${DX_MODEL_EXAMPLES:-}" DX_MODEL_STEPS="${DX_MODEL_STEPS:-}" \
                DX_MODEL_SEED="${DX_MODEL_SEED:-}" DX_MODEL_REPORT="${DX_MODEL_REPORT:-}" \
                DX_MODEL_AVOID="${DX_MODEL_AVOID:-}" \
                /bin/sh -c "cd \"\$0\" && exec \"\$@\"" "$cwd" "$@"
            # Not exec: this shell stays PID 1, so everything started inside dies with it.
            status=$?
            exit "$status"
        ' dx-env "$root" "$DX_REPO" "$DX_WORK" "$cwd" "$base" "$@"
}
