#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with Schemathesis (property-based): every operation gets
# schema-valid and schema-violating requests, plus stateful sequences, against a real stack (PostgreSQL,
# the Temporal dev server, the worker and the API, started by scripts/fuzz-stack.ts). Fails on any server
# error, any response outside the documented statuses, content types and schemas, and Schemathesis' other checks.
# Every connection stays on this machine: mail server hosts the fuzzer sends are rewritten to 127.0.0.1.
#
# Usage: scripts/fuzz-api.sh [extra `st run` options, e.g. --include-tag Users or --seed 42]
# Environment: FUZZ_MAX_EXAMPLES (cases per operation and phase, default 40), FUZZ_WORKERS (default 2),
#              FUZZ_REPORT_DIR (default ~/.cache/mailroom/fuzz-report), DATABASE_URL / TEMPORAL_ADDRESS (use your own servers).
# Prints a summary (requests sent, failures by kind and route with one request and response each) and exits
# non-zero when anything failed. Everything it starts is stopped again, also on Ctrl+C.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${MAILROOM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mailroom}"
venv="$cache/schemathesis"
schemathesis_version="4.32.5"
max_examples="${FUZZ_MAX_EXAMPLES:-40}"
workers="${FUZZ_WORKERS:-2}"
report_dir="${FUZZ_REPORT_DIR:-$cache/fuzz-report}"

fail() {
  echo "fuzz-api: $*" >&2
  exit 1
}

# --- Schemathesis, in a venv of its own ----------------------------------------------------------

ensure_schemathesis() {
  if [[ -x $venv/bin/st && "$("$venv/bin/st" --version 2>/dev/null)" == "st, version $schemathesis_version" ]]; then
    return
  fi
  command -v python3 >/dev/null || fail "python3 is needed for Schemathesis"
  echo "fuzz-api: installing Schemathesis $schemathesis_version into $venv ..." >&2
  mkdir -p "$cache"
  python3 -m venv --clear "$venv" || fail "python3 -m venv failed (Debian/Ubuntu: apt-get install python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version" ||
    fail "pip install schemathesis==$schemathesis_version failed"
}

ensure_schemathesis
if [[ -n ${DATABASE_URL:-} ]]; then
  bash "$repo_root/scripts/ensure-tools.sh" temporal
else
  bash "$repo_root/scripts/ensure-tools.sh" temporal postgres
fi

# --- The stack -----------------------------------------------------------------------------------

workdir="$(mktemp -d "${TMPDIR:-/tmp}/mailroom-fuzz.XXXXXX")"
stack_pid=""
cleanup() {
  local status=$?
  if [[ -n $stack_pid ]] && kill -0 "$stack_pid" 2>/dev/null; then
    kill -TERM "$stack_pid" 2>/dev/null || true
    for _ in $(seq 120); do
      kill -0 "$stack_pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$stack_pid" 2>/dev/null || true
    wait "$stack_pid" 2>/dev/null || true
  fi
  rm -rf "$workdir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stack_log="$report_dir/stack.log"
rm -rf "$report_dir"
mkdir -p "$report_dir"
# One node process (no npx/tsx wrapper in between), so that SIGTERM reaches the helper's own cleanup.
(cd "$repo_root" && exec node --import tsx scripts/fuzz-stack.ts "$workdir/ready.json") >"$stack_log" 2>&1 &
stack_pid=$!
echo "fuzz-api: starting PostgreSQL, Temporal, the worker and the API (log: $stack_log) ..." >&2
for _ in $(seq 600); do
  [[ -s $workdir/ready.json ]] && break
  if ! kill -0 "$stack_pid" 2>/dev/null; then
    tail -n 40 "$stack_log" >&2
    fail "the stack did not start"
  fi
  sleep 0.5
done
[[ -s $workdir/ready.json ]] || fail "the stack was not ready within 5 minutes (log: $stack_log)"

json_field() { "$venv/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$workdir/ready.json" "$1"; }
base_url="$(json_field baseUrl)"
export FUZZ_ADMIN_API_KEY FUZZ_ADMIN_USER_ID FUZZ_ADMIN_KEY_ID FUZZ_FORWARDER_SECRET FUZZ_CHANNEL_ID
FUZZ_ADMIN_API_KEY="$(json_field adminApiKey)"
FUZZ_ADMIN_USER_ID="$(json_field adminUserId)"
FUZZ_ADMIN_KEY_ID="$(json_field adminKeyId)"
FUZZ_FORWARDER_SECRET="$(json_field forwarderSecret)"
FUZZ_CHANNEL_ID="$(json_field inboundChannelId)"
echo "fuzz-api: API at $base_url; fuzzing $base_url/openapi.json as the admin" >&2

# --- Schemathesis configuration and hooks --------------------------------------------------------

# Credentials per security scheme: the admin's API key for /v1, the seeded channel's secret for the forwarder.
cat >"$workdir/schemathesis.toml" <<EOF
hooks = "$workdir/hooks.py"

[auth.openapi.apiKey]
bearer = "\${FUZZ_ADMIN_API_KEY}"

[auth.openapi.channelSecret]
bearer = "\${FUZZ_FORWARDER_SECRET}"

[auth.openapi.channelSecretBasic]
username = "forwarder"
password = "\${FUZZ_FORWARDER_SECRET}"

# Schemathesis' own list of rejections, plus 413: a schema-violating body that is also over the size
# limit is refused by its size before anything reads it.
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]

# The forwarder's endpoint answers 404 to any channel but the seeded one whose secret the run has.
[[operations]]
include-path = "/v1/channels/{channelId}/inbound"
parameters = { "path.channelId" = "\${FUZZ_CHANNEL_ID}" }
EOF

cat >"$workdir/hooks.py" <<'EOF'
import json
import os
import re
import uuid

import schemathesis

# Raw mail for the forwarder's endpoint: any text will do, the parser has to cope.
schemathesis.serializer.alias("message/rfc822", "text/plain")

ADMIN_USER_ID = os.environ["FUZZ_ADMIN_USER_ID"]
ADMIN_KEY_ID = os.environ["FUZZ_ADMIN_KEY_ID"]
INBOUND_CHANNEL_ID = os.environ["FUZZ_CHANNEL_ID"]
# Routes whose `host` the API or the worker connects to (a channel's own SMTP and IMAP servers, and their tests).
MAIL_SERVER_PATH = re.compile(r"/(smtp|imap)(/test)?$")


@schemathesis.hook
def before_call(context, case, kwargs):
    # Generated Idempotency-Keys repeat across different bodies, which the API rightly answers with 422
    # "key reused": a valid key is made unique per request; invalid ones (empty, too long) are sent as they are.
    headers = case.headers or {}
    for name, value in list(headers.items()):
        if name.lower() == "idempotency-key" and isinstance(value, str) and 1 <= len(value) <= 255:
            headers[name] = str(uuid.uuid4())
    # Nothing leaves this machine: any mail server the fuzzer names becomes a loopback address.
    if MAIL_SERVER_PATH.search(case.path) and isinstance(case.body, dict) and isinstance(case.body.get("host"), str):
        case.body["host"] = "127.0.0.1"
    # The run's own credentials stay valid to the end: the admin neither revokes their key nor steps down,
    # and the forwarder's channel is neither changed nor removed (other channels are, the run makes its own).
    params = case.path_parameters or {}
    method = case.method.upper()
    if params.get("channelId") == INBOUND_CHANNEL_ID and method not in ("GET", "HEAD") and not case.path.endswith("/inbound"):
        params["channelId"] = str(uuid.uuid4())
    if params.get("userId") == ADMIN_USER_ID:
        if params.get("keyId") == ADMIN_KEY_ID and method == "DELETE":
            params["keyId"] = str(uuid.uuid4())
        if method == "PATCH" and isinstance(case.body, dict) and case.body.get("role") == "agent":
            case.body["role"] = "admin"


# Rules no JSON schema states, which the API answers with 422 naming the field: an opaque cursor that it
# never issued, a report period that is empty, reversed or too long, a well-formed time zone name that
# is no time zone, and U+0000 in any text. Any other rejection of schema-valid data still fails.
UNSTATED_RULES = {"cursor"}
REPORT_FIELDS = {"from", "to", "timeZone"}


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if getattr(failure, "code", None) != "ST202" or response is None or response.status_code != 422:
        return True
    try:
        problem = json.loads(response.content)
    except ValueError:
        return True
    if str(problem.get("type", "")).endswith("/idempotency-key-reused"):
        return False
    errors = problem.get("errors") or []
    # The API-wide rule stated in the document's description: no text holds U+0000 (PostgreSQL cannot store it).
    if errors and all("U+0000" in str(error.get("message")) for error in errors):
        return False
    fields = {error.get("field") for error in errors}
    if fields and fields <= UNSTATED_RULES:
        return False
    if fields and fields <= REPORT_FIELDS and case.path.startswith("/v1/reports/"):
        return False
    return True
EOF

# --- The run -------------------------------------------------------------------------------------

st_status=0
(
  cd "$workdir" # Schemathesis and Hypothesis write caches to the working directory
  "$venv/bin/st" --config-file "$workdir/schemathesis.toml" run "$base_url/openapi.json" \
    --checks all \
    --max-examples "$max_examples" \
    --workers "$workers" \
    --request-timeout 30 \
    --generation-database none \
    --no-color \
    --report ndjson,junit \
    --report-dir "$report_dir" \
    "$@"
) >"$report_dir/schemathesis.txt" 2>&1 || st_status=$?

# --- Summary -------------------------------------------------------------------------------------

"$venv/bin/python" - "$report_dir" "$stack_log" "$st_status" <<'EOF'
import base64
import collections
import glob
import json
import re
import sys

report_dir, stack_log, st_status = sys.argv[1], sys.argv[2], int(sys.argv[3])
ndjson = sorted(glob.glob(f"{report_dir}/ndjson-*.ndjson"))
requests = 0
statuses = collections.Counter()
failures = {}  # (code, title) -> {operation: example}
for path in ndjson:
    for line in open(path, encoding="utf-8"):
        event = json.loads(line)
        scenario = event.get("ScenarioFinished")
        if not scenario:
            continue
        recorder = scenario["recorder"]
        interactions = recorder.get("interactions", {})
        for interaction in interactions.values():
            if interaction.get("response"):
                requests += 1
                statuses[interaction["response"]["status_code"] // 100] += 1
        for case_id, checks in recorder.get("checks", {}).items():
            for check in checks:
                if check["status"] != "failure":
                    continue
                failure = check["failure_info"]["failure"]
                kind = (failure["code"], failure["title"])
                operation = failure.get("operation") or recorder.get("label")
                if operation in failures.setdefault(kind, {}):
                    continue
                example = ""
                interaction = interactions.get(case_id)
                if interaction and interaction.get("response"):
                    request, response = interaction["request"], interaction["response"]
                    content = response.get("content") or {}
                    body = base64.b64decode(content["$base64"]).decode("utf-8", "replace") if "$base64" in content else ""
                    sent = request.get("body") or {}
                    sent = base64.b64decode(sent["$base64"]).decode("utf-8", "replace") if "$base64" in sent else ""
                    example = f"{request['method']} {request['uri']}" + (f" body={sent[:200]!r}" if sent else "")
                    example += f" -> {response['status_code']} {body[:300]}"
                else:
                    example = failure["message"].split("\n")[0]
                failures[kind][operation] = example

server_errors = []
try:
    for line in open(stack_log, encoding="utf-8", errors="replace"):
        if '"request failed"' in line:
            entry = json.loads(line)
            server_errors.append(f"{entry.get('path')}: {(entry.get('err') or {}).get('message', '?')}")
except (OSError, ValueError):
    pass

print()
print("================ fuzz-api summary ================")
print(f"requests sent: {requests} ({', '.join(f'{k}xx: {v}' for k, v in sorted(statuses.items()))})")
print(f"failure kinds: {len(failures)}, failures (kind x route): {sum(len(ops) for ops in failures.values())}")
output = open(f"{report_dir}/schemathesis.txt", encoding="utf-8", errors="replace").read()
dropped = re.search(r"Filtered: (\d+)", output)
if dropped:
    print(f"rejections of rules no schema states (cursor, report period, time zone, reused Idempotency-Key, U+0000), not failures: {dropped.group(1)}")
# The issue's bar: no server error and no response outside the documented schemas (status, media type,
# body, headers, methods). A schema-valid request refused by a rule no schema states (an empty business-hours
# interval, a team member of another account, an order list that misses an item) is shown, not failed.
ADVISORY = {"ST202"}
required = {kind: ops for kind, ops in failures.items() if kind[0] not in ADVISORY}
advisory = {kind: ops for kind, ops in failures.items() if kind[0] in ADVISORY}
print(f"failing the run (server errors, responses outside the document): {sum(len(ops) for ops in required.values())}")
for heading, group in (("failures", required), ("refused by rules no schema states (shown, not failed)", advisory)):
    for (code, title), operations in sorted(group.items()):
        print(f"\n[{heading}] {code} {title}: {len(operations)} route(s)")
        for operation, example in sorted(operations.items()):
            print(f"  - {operation}\n      {example}")
if server_errors:
    counted = collections.Counter(server_errors)
    print(f"\nserver errors logged by the API: {len(server_errors)}")
    for message, count in counted.most_common(20):
        print(f"  {count} x {message}")
print(f"\nreports: {report_dir} (schemathesis.txt has Schemathesis' own output, with curl commands to reproduce)")
if st_status != 0 and not failures:
    print(f"\nSchemathesis exited with {st_status} without recorded failures; the end of its output:\n{output[-3000:]}")
# Schemathesis exits non-zero for any failure, advisory ones included: the recorded failures decide.
sys.exit(1 if required or server_errors or (st_status != 0 and not failures) else 0)
EOF
