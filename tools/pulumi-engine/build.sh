#!/usr/bin/env bash
# Builds the Pulumi engine this project runs into <project>/.pulumi-cli/bin from Go modules pinned here:
#   pulumi                         the CLI, main package of github.com/pulumi/pulumi/pkg/v3 (cli/go.mod)
#   pulumi-language-python         the Python language host (langhost/go.mod, see below)
#   pulumi-language-python-exec    script the language host runs the program with   } copied from the sdk/v3 module
#   pulumi-resource-pulumi-python  script the engine starts for dynamic providers   } the CLI is built from
# The docker provider (pulumi-resource-docker) is not built: its module is not served (docs/engine.md).
# The versions are the go.mod files' (one place); go.sum pins every byte. Nothing downloaded is committed: the
# scripts are copied out of the module cache at build time.
#
# Does nothing when .pulumi-cli/bin already holds a build of exactly these inputs (a stamp of the go.mod/go.sum
# files and this script). A refused module or a compile error stops the build with the module, the version and the
# fix. Prints how long the build took.
set -euo pipefail

here="$(cd "${BASH_SOURCE[0]%/*}" && pwd)"
project="$(cd "$here/../.." && pwd)"
bin="${PULUMI_ENGINE_BIN:-$project/.pulumi-cli/bin}"
stamp="$bin/.engine-stamp"

# The Go on this machine unless the environment names another (a module needing a newer Go: GOTOOLCHAIN=go1.27.3).
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOFLAGS=-mod=readonly CGO_ENABLED=0
# The CLI must not look for updates or download plugins while it is used below.
export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true

say() { printf '[engine] %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "no Go toolchain on PATH: the engine is built from Go modules; install Go 1.26 (apt-get install golang-go is older; use the Go module proxy's toolchain) or put a pulumi CLI on PATH"

inputs_hash() {
  { cat "$here/build.sh" "$here/cli/go.mod" "$here/cli/go.sum" "$here/langhost/go.mod" "$here/langhost/go.sum"
    go env GOVERSION; } | sha256sum | cut -d' ' -f1
}

module_version() { # module dir, module path: the version its go.mod requires (read offline, no module cache)
  (cd "$1" && go mod edit -json) | tr -d '\n' | grep -o "\"Path\": \"$2\",[^}]*" \
    | sed -n 's/.*"Version": "\([^"]*\)".*/\1/p' | head -1
}

cli_version=$(module_version "$here/cli" github.com/pulumi/pulumi/pkg/v3)
sdk_version=$(module_version "$here/cli" github.com/pulumi/pulumi/sdk/v3)
host_version=$(module_version "$here/langhost" github.com/pulumi/pulumi/sdk/v3)
[ -n "$cli_version" ] && [ -n "$host_version" ] || die "cannot read the pinned versions from tools/pulumi-engine/{cli,langhost}/go.mod: restore them from git"
[ "$cli_version" = "$sdk_version" ] || die "cli/go.mod pins pkg/v3 $cli_version but sdk/v3 $sdk_version: they must be one release (go get both at the same version)"

want="$(inputs_hash)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && [ -x "$bin/pulumi" ] && [ -x "$bin/pulumi-language-python" ] \
   && [ -x "$bin/pulumi-language-python-exec" ] && [ -x "$bin/pulumi-resource-pulumi-python" ] \
   && [ "$("$bin/pulumi" version 2>/dev/null)" = "$cli_version" ]; then
  say "up to date: pulumi $cli_version, Python language host of sdk $host_version in ${bin#$project/}"
  exit 0
fi

start=$(date +%s)
mkdir -p "$bin"
rm -f "$stamp"

# Download first, so a refusal is reported as such (not as a compile error) with the module and the version.
download() { # module dir, what for
  local dir="$1" what="$2" out
  if ! out=$(cd "$dir" && go mod download -json all 2>&1); then
    local failed
    failed=$(printf '%s\n' "$out" | sed -n 's/.*"Error": "\([^"]*\)".*/\1/p' | head -3)
    [ -n "$failed" ] || failed=$(printf '%s\n' "$out" | tail -5)
    die "the Go module proxy did not serve a module $what needs:
$failed
fix: check GOPROXY (go env GOPROXY) and the network; if that version is no longer served, move ${dir#$project/}/go.mod to a version that is (go get <module>@<version> && go mod tidy) and say so in docs/engine.md"
  fi
}

compile() { # module dir, package, output name, ldflags
  local dir="$1" pkg="$2" out="$3" ldflags="$4" log
  say "building $out from $pkg"
  if ! log=$(cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$bin/$out.tmp" "$pkg" 2>&1); then
    rm -f "$bin/$out.tmp"
    die "could not compile $pkg (${dir#$project/}/go.mod):
$(printf '%s\n' "$log" | tail -15)
fix: this Go is $(go env GOVERSION); the modules need the Go their go.mod names; if the pinned version does not compile, pin another release in ${dir#$project/}/go.mod"
  fi
  mv -f "$bin/$out.tmp" "$bin/$out"
}

say "downloading modules (pulumi $cli_version, language host of sdk $host_version)"
download "$here/cli" "the Pulumi CLI $cli_version"
download "$here/langhost" "the Python language host (sdk $host_version)"

compile "$here/cli" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi pulumi \
  "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$cli_version"
compile "$here/langhost" github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python pulumi-language-python \
  "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$host_version"

sdk_dir=$(cd "$here/cli" && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
install -m 755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$bin/pulumi-language-python-exec"
install -m 755 "$sdk_dir/python/dist/pulumi-resource-pulumi-python" "$bin/pulumi-resource-pulumi-python"

got=$("$bin/pulumi" version)
[ "$got" = "$cli_version" ] || die "the built CLI reports $got, expected $cli_version"
printf '%s\n' "$want" > "$stamp"
say "built pulumi $got and the Python language host (sdk $host_version) in $(( $(date +%s) - start )) s into ${bin#$project/}"

# The docker provider's module is not served by the Go module proxy this project builds from (docs/engine.md
# says what was tried). Say so on every build, loudly, and what it means; build nothing that was not pinned.
if [ -x "$bin/pulumi-resource-docker" ] || command -v pulumi-resource-docker >/dev/null 2>&1; then
  say "pulumi-resource-docker: found"
else
  say "pulumi-resource-docker: NOT BUILT: github.com/pulumi/pulumi-docker/provider/v5 (and /v4) is not served by the Go module proxy; \`pulumi up\` can publish only images whose content tag the registry already holds (docs/engine.md)"
fi
