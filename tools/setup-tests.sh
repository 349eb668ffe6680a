#!/usr/bin/env bash
# Installs what the test suite needs: Debian's Chromium, PostgreSQL and openssl (if missing), JupyterHub's
# configurable-http-proxy (npm), and the package with its test extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v openssl >/dev/null || need+=(openssl)  # the reminders' STARTTLS test makes a certificate
command -v npm >/dev/null || need+=(npm)  # configurable-http-proxy, JupyterHub's proxy, comes from npm
if [ ${#need[@]} -gt 0 ]; then
  echo "Installing ${need[*]} from Debian's packages..."
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
python -m pip install -q -e ".[test]"
# tests/test_hub_e2e.py runs a real JupyterHub, whose proxy is configurable-http-proxy (Node).
if ! command -v configurable-http-proxy >/dev/null; then
  echo "Installing configurable-http-proxy from npm..."
  $sudo npm install -g -s configurable-http-proxy
fi
# In that test the learners' servers run as other local users, with this Python: when it lives in a folder
# others may not enter (pyenv in root's home /root, mode 700), let them pass through it (search permission
# only, chmod o+x: nothing in it becomes listable or readable that was not already).
python_bin="$(python -c 'import os, sys; print(os.path.realpath(sys.executable))')"
folder="$(dirname "$python_bin")"
while [ "$folder" != "/" ]; do
  if [ $(( 0$(stat -c %a "$folder") & 1 )) -eq 0 ]; then
    echo "Letting the hub test's users pass through $folder (chmod o+x) to run $python_bin"
    $sudo chmod o+x "$folder"
  fi
  folder="$(dirname "$folder")"
done
