#!/usr/bin/env bash
# The test command: installs everything the tests need, then runs them.
#   - Debian's chromium for the JupyterLab browser test, Open MPI for the MPI engine tests,
#     openssh and iproute2 for the SSH tests (network namespaces), slurm-wlm and munge for the
#     Slurm tests (apt-get, as root),
#   - pxmagic with its test extras into ./.venv,
#   - pytest; a run that collects no tests fails.
set -uo pipefail
cd "$(dirname "$0")"

missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v mpiexec >/dev/null || missing="$missing openmpi-bin libopenmpi-dev"
[ -x /usr/sbin/sshd ] && command -v ssh >/dev/null || missing="$missing openssh-server openssh-client"
command -v ip >/dev/null || missing="$missing iproute2"
[ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/munged ] || missing="$missing slurm-wlm munge"
if [ -n "$missing" ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing || exit 1
fi
python3 -m venv .venv && .venv/bin/pip install -q '.[test]' || exit 1
.venv/bin/python -m pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: treating that as a failure" >&2
    exit 1
fi
exit "$status"
