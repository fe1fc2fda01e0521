#!/usr/bin/env bash
# The README's main job: `make up` (or `bash scripts/up-local.sh [pulumi up args, e.g. --yes]`).
# Starts a local registry on 127.0.0.1:5000, selects the project's file state backend and the `local` stack, and
# runs `pulumi up --stack local`; `bash scripts/up-local.sh --stop-registry` stops the registry it started.
# The logic lives in scripts/up_local.py (standard library only); its --help lists the environment overrides.
set -euo pipefail
# Shell built-ins only up to the exec, so the script also runs with a minimal PATH.
here="$(cd "${BASH_SOURCE[0]%/*}" && pwd)"
project="${ACR_PUBLISH_PROJECT_DIR:-${here%/*}}"
# The project's virtualenv when `make` has made it, else any Python 3 (the script needs no package).
if [ -x "$project/venv/bin/python" ]; then
  python="$project/venv/bin/python"
elif command -v python3 >/dev/null 2>&1; then
  python="$(command -v python3)"
else
  echo "error: no Python 3 found: run \`make up\` (it creates ./venv) or install python3" >&2
  exit 2
fi
exec "$python" "$here/up_local.py" "$@"
