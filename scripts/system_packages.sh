#!/usr/bin/env bash
# The Debian packages a make target needs beyond Python, Node, git and make: installed here when we are root
# with apt, else one line naming the command to run. Usage: system_packages.sh [--warn] PACKAGE...
# (--warn: a missing package is reported but does not stop the target; `make run` serves without a sandbox
# and says so in its banner, `make test` cannot pass without them.)
set -euo pipefail
warn=false
if [ "${1:-}" = "--warn" ]; then warn=true; shift; fi

# The command each package provides, which is how we tell whether it is there.
provides() {
  case "$1" in
    chromium) echo /usr/bin/chromium ;;
    bubblewrap) echo bwrap ;;
    socat) echo socat ;;
    *) echo "$1" ;;
  esac
}

missing=()
for pkg in "$@"; do
  command -v "$(provides "$pkg")" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]} (apt-get) ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi

sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo "
if command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages: ${missing[*]}; run: ${sudo}apt-get install -y ${missing[*]}" >&2
else
  echo "missing system packages: ${missing[*]}; install them with your system's package manager" >&2
fi
$warn && exit 0
exit 1
