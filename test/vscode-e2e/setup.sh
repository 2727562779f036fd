#!/usr/bin/env bash
# Installs what the VS Code end-to-end suite (test/vscode-e2e) needs; idempotent (a second run
# takes seconds). Needs only the Debian mirror and the npm registry: no GitHub, no browser download.
#   - Debian packages: headers and tools for code-server's native modules, ripgrep, chromium
#   - code-server@4.100.3 (the last line that runs on Node 20) from the npm registry, into a cache
#     folder outside the repository: ${LLAVA_LENS_E2E_CACHE:-$HOME/.cache/llava-lens-e2e}/code-server
# Recipe: ../shared/design/vscode-e2e.md. Each step is skipped when what it makes is present.
# Runs as root, or as a user with sudo for apt-get.
set -euo pipefail

CODE_SERVER_VERSION=4.100.3
RIPGREP_VERSION=1.15.11            # the @vscode/ripgrep version code-server 4.100.3 depends on
case "$(uname -m)" in              # the archive name @vscode/ripgrep's postinstall looks for
  x86_64) RIPGREP_ASSET=ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz ;;
  aarch64) RIPGREP_ASSET=ripgrep-v13.0.0-10-aarch64-unknown-linux-musl.tar.gz ;;
  *) echo "[vscode-e2e setup] unsupported machine $(uname -m) (x86_64 and aarch64 only)" >&2; exit 1 ;;
esac
CACHE="${LLAVA_LENS_E2E_CACHE:-$HOME/.cache/llava-lens-e2e}"
PREFIX="$CACHE/code-server"
CODE_SERVER_BIN="$PREFIX/node_modules/.bin/code-server"

say() { printf '[vscode-e2e setup] %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# 1. Debian packages -------------------------------------------------------------------------
# fonts-dejavu-core: the fonts the generated OCR and diagram test images are drawn in (all tests).
# The rest is for this suite: build-essential and python3 build code-server's native modules
# (usually present already). LLAVA_LENS_SKIP_VSCODE_E2E=1 installs only the fonts.
PKGS=(fonts-dejavu-core)
if [ "${LLAVA_LENS_SKIP_VSCODE_E2E:-}" != 1 ]; then
  PKGS+=(libkrb5-dev libxkbfile-dev libsecret-1-dev libx11-dev pkg-config build-essential python3 ripgrep chromium)
fi
missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then missing+=("$p"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  say "Debian packages present: ${PKGS[*]}"
fi

if [ "${LLAVA_LENS_SKIP_VSCODE_E2E:-}" = 1 ]; then
  say "LLAVA_LENS_SKIP_VSCODE_E2E=1: not installing code-server"
  exit 0
fi

# 2. code-server -------------------------------------------------------------------------------
installed_version() {
  node -e 'try{console.log(require(process.argv[1]).version)}catch{}' "$PREFIX/node_modules/code-server/package.json"
}
if [ -x "$CODE_SERVER_BIN" ] && [ "$(installed_version)" = "$CODE_SERVER_VERSION" ] \
   && [ -f "$PREFIX/node_modules/code-server/lib/vscode/node_modules/@vscode/ripgrep/bin/rg" ]; then
  say "code-server $CODE_SERVER_VERSION present in $PREFIX"
else
  # @vscode/ripgrep's postinstall downloads ripgrep from GitHub unless its cache holds the archive:
  # put Debian's rg there (the folder follows os.tmpdir()).
  TMPD="$(node -p 'require("os").tmpdir()')"
  RG_CACHE="$TMPD/vscode-ripgrep-cache-$RIPGREP_VERSION"
  if [ ! -f "$RG_CACHE/$RIPGREP_ASSET" ]; then
    say "seeding the ripgrep cache $RG_CACHE/$RIPGREP_ASSET with $(command -v rg)"
    pkg="$(mktemp -d)"
    cp "$(command -v rg)" "$pkg/rg"
    mkdir -p "$RG_CACHE"
    tar czf "$RG_CACHE/$RIPGREP_ASSET" -C "$pkg" rg
    rm -rf "$pkg"
  fi
  say "npm install code-server@$CODE_SERVER_VERSION into $PREFIX (a few minutes)"
  mkdir -p "$PREFIX"
  [ -f "$PREFIX/package.json" ] || echo '{"name":"llava-lens-e2e-code-server","private":true}' > "$PREFIX/package.json"
  # unsafe_perm: its postinstall refuses to run as root otherwise; yes: it calls npx without a prompt answer.
  ( cd "$PREFIX" && npm_config_unsafe_perm=true npm_config_yes=true \
      npm install --no-audit --no-fund --no-save "code-server@$CODE_SERVER_VERSION" )
  [ -x "$CODE_SERVER_BIN" ] || { say "code-server did not install: $CODE_SERVER_BIN missing"; exit 1; }
fi

say "code-server: $CODE_SERVER_BIN ($(installed_version))"
say "chromium:    $(command -v chromium) ($(chromium --version 2>/dev/null | head -1))"
