#!/usr/bin/env bash
# Smoke test of couch-shim.js: starts it on a free port (in memory, then on
# disk, each with an admin; then an admin party), checks every fix with curl,
# checks that on-disk data survives a restart, and stops the server.
# Exits non-zero if any check fails. Needs node, curl and `npm ci` done first.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
SHIM="$HERE/couch-shim.js"
ADMIN=admin
PASS='s3cret:pass'
PASSED=0
FAILED=0
SERVER_PID=
URL=
WORK=$(mktemp -d "${TMPDIR:-/tmp}/couch-smoke.XXXXXX")

cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ ! -d "$HERE/node_modules/express-pouchdb" ]; then
  echo "node_modules missing: run npm ci --prefix $HERE --no-audit --no-fund" >&2
  exit 2
fi

ok() { PASSED=$((PASSED + 1)); }
ko() { FAILED=$((FAILED + 1)); echo "FAIL [$PHASE] $*" >&2; }

# start_server DIR [shim args...]: starts the shim, waits for its line.
start_server() {
  local dir=$1; shift
  mkdir -p "$dir"
  node "$SHIM" --host 127.0.0.1 --port 0 --dir "$dir" "$@" >"$dir/stdout" 2>"$dir/stderr" &
  SERVER_PID=$!
  URL=
  for _ in $(seq 1 200); do
    if grep -q '^couch-shim listening on ' "$dir/stdout" 2>/dev/null; then
      URL=$(sed -n 's/^couch-shim listening on //p' "$dir/stdout")
      break
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$URL" ]; then
    echo "server did not start; stderr:" >&2
    cat "$dir/stderr" >&2
    exit 1
  fi
  if [ "$(wc -l <"$dir/stdout")" -ne 1 ]; then ko "stdout should hold exactly one line"; else ok; fi
}

# stop_server: SIGTERM, expects a clean exit 0 within 5 s.
stop_server() {
  kill -TERM "$SERVER_PID"
  local rc=
  for _ in $(seq 1 100); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.05
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    ko "server still running 5 s after SIGTERM"
    kill -KILL "$SERVER_PID"
  fi
  wait "$SERVER_PID"; rc=$?
  if [ "$rc" -eq 0 ]; then ok; else ko "exit code after SIGTERM: $rc"; fi
  SERVER_PID=
}

# req [curl options...] METHOD PATH [JSON-BODY]: sets STATUS, BODY, HEADERS.
AUTH=(-u "$ADMIN:$PASS")
req() {
  local opts=()
  while [ "${1:0:1}" = "-" ]; do opts+=("$1" "$2"); shift 2; done
  local method=$1 path=$2 data=${3-}
  local args=(-s -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' -X "$method" "${AUTH[@]}" "${opts[@]}")
  if [ -n "$data" ]; then args+=(-H 'Content-Type: application/json' --data-binary "$data"); fi
  STATUS=$(curl "${args[@]}" "$URL$path")
  BODY=$(cat "$WORK/body")
  HEADERS=$(cat "$WORK/headers")
}

# expect STATUS [JS predicate on the parsed body `b`, raw text in `t`]
expect() {
  local want=$1 pred=${2-}
  if [ "$STATUS" != "$want" ]; then
    ko "$LAST: status $STATUS, wanted $want; body: ${BODY:0:300}"
    return
  fi
  if [ -n "$pred" ]; then
    local script='const t = process.env.BODY_TEXT; let b; try { b = JSON.parse(t); } catch (e) { b = undefined; }
      process.exit(('"$pred"') ? 0 : 1);'
    if ! BODY_TEXT="$BODY" node -e "$script" 2>"$WORK/pred.err"; then
      ko "$LAST: predicate failed: $pred; body: ${BODY:0:400} $(head -c 300 "$WORK/pred.err")"
      return
    fi
  fi
  ok
}

# t NAME [curl options...] METHOD PATH [BODY] -- STATUS [PREDICATE]
t() {
  LAST=$1; shift
  local a=()
  while [ "$1" != "--" ]; do a+=("$1"); shift; done
  shift
  req "${a[@]}"
  expect "$@"
}

api_checks() {
  # --- 4: root, _up
  t "GET /" GET / -- 200 'b.couchdb === "Welcome" && b.version === "3.3.3" && /^[0-9a-f]{32}$/.test(b.uuid)'
  t "GET /_up" GET /_up -- 200 'b.status === "ok"'
  t "GET /_uuids" GET '/_uuids?count=3' -- 200 'b.uuids.length === 3 && b.uuids.every(u => /^[0-9a-f]{32}$/.test(u))'
  t "GET /_session" GET /_session -- 200 'b.ok === true && b.userCtx.roles.includes("_admin")'

  # --- 1 + URL encoding: '/' kept in names, every byte percent-encoded
  t "PUT db with %2F" PUT /global%2Finstances -- 201 'b.ok === true'
  t "PUT db again" PUT /global%2Finstances -- 412 'b.error === "file_exists"'
  t "PUT fully encoded" PUT /example%2Dcom%2Fio%2Dcozy%2Dfiles -- 201
  t "PUT fully encoded again (same db)" PUT /example-com%2Fio-cozy-files -- 412
  t "PUT %5F" PUT /example%2Dcom%2Fio%5Fcozy%5Fjobs -- 201
  t "PUT no slash twin" PUT /example-comio-cozy-files -- 201
  t "PUT example-comx" PUT /example-comx -- 201
  t "PUT legal chars" PUT '/a0_%24()%2B-%2Fz' -- 201
  t "GET unencoded slash" GET /global/instances -- 404

  # --- 4: _all_dbs
  t "_all_dbs sorted" GET /_all_dbs -- 200 'JSON.stringify(b) === JSON.stringify([...b].sort()) && b.includes("global/instances") && b.includes("example-com/io-cozy-files") && b.includes("example-com/io_cozy_jobs") && b.includes("example-comio-cozy-files") && !b.some(n => n.startsWith("pouch__"))'
  t "_all_dbs start_key/end_key" GET '/_all_dbs?start_key=%22example-com%2F%22&end_key=%22example-com0%22' -- 200 'JSON.stringify(b) === JSON.stringify(["example-com/io-cozy-files","example-com/io_cozy_jobs"])'
  t "_all_dbs startkey/endkey" GET '/_all_dbs?startkey=%22example-com%2F%22&endkey=%22example-com%2Fio_cozy_jobs%22' -- 200 'JSON.stringify(b) === JSON.stringify(["example-com/io-cozy-files","example-com/io_cozy_jobs"])'
  t "_all_dbs limit/skip" GET '/_all_dbs?startkey=%22example%22&limit=2&skip=1' -- 200 'JSON.stringify(b) === JSON.stringify(["example-com/io_cozy_jobs","example-comio-cozy-files"])'
  t "_all_dbs descending" GET '/_all_dbs?descending=true&start_key=%22example-com0%22&end_key=%22example-com%2F%22' -- 200 'JSON.stringify(b) === JSON.stringify(["example-com/io_cozy_jobs","example-com/io-cozy-files"])'
  t "_all_dbs inclusive end" GET '/_all_dbs?end_key=%22example-comx%22&start_key=%22example-comio-cozy-files%22' -- 200 'JSON.stringify(b) === JSON.stringify(["example-comio-cozy-files","example-comx"])'

  # --- 5: name validation, DELETE missing
  t "PUT Bad_Name" PUT /Bad_Name -- 400 'b.error === "illegal_database_name"'
  t "PUT _badname" PUT /_badname -- 400 'b.error === "illegal_database_name"'
  t "PUT 1abc" PUT /1abc -- 400 'b.error === "illegal_database_name"'
  t "PUT a.b" PUT /a.b -- 400 'b.error === "illegal_database_name"'
  t "GET missing db" GET /missing -- 404 'b.error === "not_found" && b.reason === "Database does not exist."'
  t "DELETE missing db" DELETE /missing -- 404 'b.error === "not_found"'

  # --- 6: GET /db
  local DB=/example%2Dcom%2Fio%2Dcozy%2Dfiles
  t "GET /db shape" GET $DB -- 200 'b.db_name === "example-com/io-cozy-files" && b.update_seq === "0" && typeof b.sizes.file === "number" && typeof b.sizes.external === "number" && typeof b.sizes.active === "number" && "purge_seq" in b && b.doc_del_count === 0 && b.doc_count === 0 && b.disk_format_version > 0 && b.compact_running === false && b.cluster.q >= 1 && b.cluster.n >= 1 && b.cluster.w >= 1 && b.cluster.r >= 1 && typeof b.instance_start_time === "string" && JSON.stringify(b.props) === "{}"'

  # --- documents
  t "PUT doc id with %2F" PUT "$DB/io.cozy.apps%2Fdrive" '{"slug":"drive"}' -- 201 'b.ok && b.id === "io.cozy.apps/drive"'
  local rev; rev=$(node -e 'console.log(JSON.parse(process.argv[1]).rev)' "$BODY")
  t "GET doc id with %2F" GET "$DB/io.cozy.apps%2Fdrive" -- 200 'b._id === "io.cozy.apps/drive" && b.slug === "drive"'
  if grep -qi "^etag: \"$rev\"" <<<"$HEADERS"; then ok; else ko "doc ETag should be \"$rev\": $HEADERS"; fi
  t "PUT doc conflict" PUT "$DB/io.cozy.apps%2Fdrive" '{"slug":"x"}' -- 409 'b.error === "conflict"'
  t "PUT doc update" PUT "$DB/io.cozy.apps%2Fdrive" "{\"slug\":\"drive2\",\"_rev\":\"$rev\"}" -- 201 'b.rev.startsWith("2-")'
  t "PUT doc, + is a space" PUT "$DB/io.cozy.files%2Fabc+1%2Bx" '{"n":1}' -- 201 'b.id === "io.cozy.files/abc 1+x"'
  t "GET doc %20" GET "$DB/io.cozy.files%2Fabc%201%2Bx" -- 200 'b.n === 1'
  t "GET doc +" GET "$DB/io.cozy.files%2Fabc+1%2Bx?revs_info=true" -- 200 'b.n === 1 && Array.isArray(b._revs_info)'
  t "PUT _design%2Fname" PUT "$DB/_design%2Fone" '{"views":{"by_n":{"map":"function(doc){ if (doc.n) emit(doc.n, 1); }","reduce":"_sum"}}}' -- 201 'b.id === "_design/one"'
  t "PUT _design/name" PUT "$DB/_design/two" '{"views":{}}' -- 201 'b.id === "_design/two"'
  t "GET _design/name" GET "$DB/_design%2Fone" -- 200 'b._id === "_design/one"'
  t "view" GET "$DB/_design/one/_view/by_n?reduce=false" -- 200 'b.total_rows === 1 && b.rows[0].key === 1'
  t "_design_docs" GET "$DB/_design_docs" -- 200 'b.rows.length === 2'
  t "PUT _local" PUT "$DB/_local/sync" '{"seq":1}' -- 201 'b.id === "_local/sync"'
  t "GET _local" GET "$DB/_local/sync" -- 200 'b.seq === 1'
  rev=$(node -e 'console.log(JSON.parse(process.argv[1])._rev)' "$BODY")
  t "DELETE _local" DELETE "$DB/_local/sync?rev=$rev" -- 200 'b.ok === true'
  t "GET deleted _local" GET "$DB/_local/sync" -- 404
  t "POST /db server id" POST "$DB" '{"kind":"posted"}' -- 201 '/^[0-9a-f]{32}$/.test(b.id)'
  t "_bulk_docs" POST "$DB/_bulk_docs" '{"docs":[{"_id":"b1","v":1},{"_id":"b2","v":2},{"_id":"b3","v":3},{"v":4}]}' -- 201 'b.length === 4 && b.slice(0,3).map(r => r.id).join() === "b1,b2,b3" && b.every(r => r.ok) && /^[0-9a-f]{32}$/.test(b[3].id)'
  t "_bulk_docs conflict inline" POST "$DB/_bulk_docs" '{"docs":[{"_id":"b1","v":9}]}' -- 201 'b[0].error === "conflict"'
  t "POST _all_docs keys" POST "$DB/_all_docs?include_docs=true" '{"keys":["b2","nope","b1"]}' -- 200 'b.rows.length === 3 && b.rows[0].doc.v === 2 && b.rows[1].error === "not_found" && b.rows[2].doc.v === 1'
  t "GET _all_docs startkey/limit" GET "$DB/_all_docs?include_docs=true&startkey=%22b2%22&limit=2" -- 200 'b.rows.length === 2 && b.rows[0].id === "b2" && b.rows[1].id === "b3" && b.rows[0].doc.v === 2 && typeof b.total_rows === "number"'
  t "DELETE doc" DELETE "$DB/b3?rev=$(curl -s "${AUTH[@]}" "$URL$DB/b3" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)._rev))')" -- 200 'b.ok === true'
  t "GET /db counts" GET $DB -- 200 'b.doc_del_count === 1 && b.doc_count === 8 && Number(b.update_seq) > 0'

  # --- indexes and 7: _find
  t "POST _index" POST "$DB/_index" '{"ddoc":"by-t-s","name":"by-t-s","index":{"fields":["t","s"],"partial_filter_selector":{"t":{"$exists":true}}}}' -- 200 'b.result === "created" && b.id === "_design/by-t-s"'
  t "POST _index again" POST "$DB/_index" '{"ddoc":"by-t-s","name":"by-t-s","index":{"fields":["t","s"],"partial_filter_selector":{"t":{"$exists":true}}}}' -- 200 'b.result === "exists"'
  t "GET _index" GET "$DB/_index" -- 200 'b.indexes.some(i => i.ddoc === "_design/by-t-s" && i.def.fields.length === 2)'
  local docs='{"docs":['
  for i in $(seq 1 30); do docs+="{\"_id\":\"f$(printf %02d "$i")\",\"t\":\"f\",\"s\":$i},"; done
  docs="${docs%,}]}"
  t "_bulk_docs 30" POST "$DB/_bulk_docs" "$docs" -- 201 'b.length === 30'
  t "_find default limit 25" POST "$DB/_find" '{"selector":{"t":"f"}}' -- 200 'b.docs.length === 25 && typeof b.bookmark === "string" && b.bookmark !== "nil"'
  t "_find \$gt limit 2" POST "$DB/_find" '{"selector":{"t":"f","s":{"$gt":1}},"limit":2,"sort":[{"t":"asc"},{"s":"asc"}],"use_index":"by-t-s"}' -- 200 'b.docs.map(d => d.s).join() === "2,3"'
  local bm; bm=$(node -e 'console.log(JSON.parse(process.argv[1]).bookmark)' "$BODY")
  t "_find bookmark page 2" POST "$DB/_find" "{\"selector\":{\"t\":\"f\",\"s\":{\"\$gt\":1}},\"limit\":2,\"sort\":[{\"t\":\"asc\"},{\"s\":\"asc\"}],\"bookmark\":\"$bm\"}" -- 200 'b.docs.map(d => d.s).join() === "4,5"'
  t "_find \$lt skip" POST "$DB/_find" '{"selector":{"t":"f","s":{"$lt":10}},"skip":3,"limit":3,"fields":["_id","s"]}' -- 200 'b.docs.map(d => d.s).join() === "4,5,6" && Object.keys(b.docs[0]).sort().join() === "_id,s"'
  t "_find last page" POST "$DB/_find" '{"selector":{"t":"f","s":{"$gt":28}},"limit":5}' -- 200 'b.docs.length === 2'
  bm=$(node -e 'console.log(JSON.parse(process.argv[1]).bookmark)' "$BODY")
  t "_find after last page" POST "$DB/_find" "{\"selector\":{\"t\":\"f\",\"s\":{\"\$gt\":28}},\"limit\":5,\"bookmark\":\"$bm\"}" -- 200 'b.docs.length === 0 && b.bookmark === "nil"'
  t "_find bad bookmark" POST "$DB/_find" '{"selector":{"t":"f"},"bookmark":"@@"}' -- 400
  t "_find unknown use_index falls back" POST "$DB/_find" '{"selector":{"v":{"$gt":0}},"use_index":"nope"}' -- 200 'b.docs.length === 3'

  # --- 8: _changes
  t "_changes normal" GET "$DB/_changes" -- 200 'Array.isArray(b.results) && b.results.length > 30 && b.last_seq !== undefined'
  t "_changes limit" GET "$DB/_changes?limit=2&include_docs=true" -- 200 'b.results.length === 2 && b.results[0].doc !== undefined'
  t "_changes doc_ids" POST "$DB/_changes?filter=_doc_ids" '{"doc_ids":["b1","b2"]}' -- 200 'b.results.map(r => r.id).sort().join() === "b1,b2"'
  t "_changes continuous timeout=0" -H 'Accept-Encoding: gzip' GET "$DB/_changes?feed=continuous&timeout=0&include_docs=true" -- 200 't.trim().split("\n").length > 30 && JSON.parse(t.trim().split("\n").pop()).last_seq !== undefined && JSON.parse(t.split("\n")[0]).doc !== undefined'
  if grep -qi '^content-encoding' <<<"$HEADERS"; then ko "continuous _changes must not be compressed"; else ok; fi
  t "_changes continuous limit" GET "$DB/_changes?feed=continuous&limit=3" -- 200 't.trim().split("\n").length === 4'
  local t0 t1
  t0=$(date +%s%N)
  t "_changes longpoll timeout" GET "$DB/_changes?feed=longpoll&since=now&timeout=500" -- 200 'b.results.length === 0 && b.last_seq !== undefined && b.pending === 0'
  t1=$(date +%s%N)
  if [ $(((t1 - t0) / 1000000)) -ge 400 ] && [ $(((t1 - t0) / 1000000)) -lt 3000 ]; then ok; else ko "longpoll timeout=500 took $(((t1 - t0) / 1000000)) ms"; fi
  t "_changes longpoll existing" GET "$DB/_changes?feed=longpoll&since=0&limit=1" -- 200 'b.results.length === 1'
  t0=$(date +%s%N)
  curl -s "${AUTH[@]}" "$URL$DB/_changes?feed=longpoll&since=now&timeout=10000" >"$WORK/longpoll" &
  local cpid=$!
  sleep 0.3
  req PUT "$DB/wake-up" '{"w":1}'
  wait "$cpid"
  t1=$(date +%s%N)
  LAST="longpoll woken by a change"; BODY=$(cat "$WORK/longpoll"); STATUS=200
  expect 200 'b.results.length === 1 && b.results[0].id === "wake-up" && b.last_seq === b.results[0].seq'
  if [ $(((t1 - t0) / 1000000)) -lt 3000 ]; then ok; else ko "woken longpoll took $(((t1 - t0) / 1000000)) ms"; fi
  # continuous live feed with heartbeat: the client ends it (curl --max-time)
  curl -s -N "${AUTH[@]}" --max-time 1.5 "$URL$DB/_changes?feed=continuous&since=now&heartbeat=200" >"$WORK/live" &
  cpid=$!
  sleep 0.4
  req PUT "$DB/live-1" '{"l":1}'
  wait "$cpid"
  LAST="continuous live + heartbeat"; BODY=$(cat "$WORK/live"); STATUS=200
  expect 200 't.split("\n").some(l => l.trim() && JSON.parse(l).id === "live-1")'
  local newlines; newlines=$(tr -cd '\n' <"$WORK/live" | wc -c)
  if [ "$newlines" -ge 4 ]; then ok; else ko "heartbeat=200 for 1.5 s sent only $newlines newlines"; fi
  t0=$(date +%s%N)
  t "continuous timeout ends feed" GET "$DB/_changes?feed=continuous&since=now&timeout=300" -- 200 'JSON.parse(t.trim()).last_seq !== undefined'
  t1=$(date +%s%N)
  if [ $(((t1 - t0) / 1000000)) -lt 3000 ]; then ok; else ko "continuous timeout=300 took $(((t1 - t0) / 1000000)) ms"; fi

  # --- misc
  t "_dbs_info" POST /_dbs_info '{"keys":["global/instances","nope"]}' -- 200 'b[0].info.db_name === "global/instances" && b[1].error === "not_found"'
  t "_security" PUT "$DB/_security" '{"admins":{"names":[],"roles":[]},"members":{"names":[],"roles":[]}}' -- 200
  t "DELETE _index" DELETE "$DB/_index/_design%2Fby-t-s/json/by-t-s" -- 200 'b.ok === true'
  t "DELETE db" DELETE /example-comx -- 200 'b.ok === true'
  t "DELETE db again" DELETE /example-comx -- 404
  t "GET deleted db" GET /example-comx -- 404
  t "_all_dbs after delete" GET /_all_dbs -- 200 '!b.includes("example-comx")'
}

auth_checks() {
  local saved=("${AUTH[@]}")
  AUTH=()
  t "anon GET /" GET / -- 200 'b.couchdb === "Welcome"'
  t "anon GET /_up" GET /_up -- 200
  t "anon GET /_uuids" GET /_uuids -- 200
  t "anon GET /_session" GET /_session -- 200 'b.userCtx.name === null'
  t "anon _all_dbs" GET /_all_dbs -- 401 'b.error === "unauthorized"'
  t "anon PUT /newdb" PUT /newdb -- 401
  t "anon GET db" GET /global%2Finstances -- 401
  t "anon PUT doc" PUT /global%2Finstances/x '{}' -- 401
  t "server alive after anon PUT" GET /_up -- 200
  AUTH=(-u "$ADMIN:wrong")
  t "wrong password GET /" GET / -- 401 'b.error === "unauthorized"'
  t "wrong password _all_dbs" GET /_all_dbs -- 401
  t "wrong password _up" GET /_up -- 401
  AUTH=(-u "nobody:$PASS")
  t "unknown user" GET /_all_dbs -- 401
  AUTH=()
  t "cookie login" POST /_session "{\"name\":\"$ADMIN\",\"password\":\"$PASS\"}" -- 200 'b.ok === true'
  local cookie; cookie=$(sed -n 's/^[Ss]et-[Cc]ookie: \(AuthSession=[^;]*\).*/\1/p' <<<"$HEADERS")
  t "cookie auth" -H "Cookie: $cookie" GET /_all_dbs -- 200 'Array.isArray(b)'
  AUTH=("${saved[@]}")
}

PHASE=memory
start_server "$WORK/mem" --in-memory --admin "$ADMIN:$PASS"
api_checks
auth_checks
if [ -z "$(find "$WORK/mem" -name CURRENT)" ]; then ok; else ko "in-memory mode wrote LevelDB files"; fi
if grep -q '"admins"' "$WORK/mem/config.json" && ! grep -q "$PASS" "$WORK/mem/config.json"; then ok; else ko "config.json should hold a hashed admin"; fi
stop_server

PHASE=disk
start_server "$WORK/disk" --admin "$ADMIN:$PASS" --log "$WORK/disk-http.log"
api_checks
auth_checks
t "PUT a/b" PUT /a%2Fb -- 201
t "PUT doc in a/b" PUT /a%2Fb/doc+1 '{"kept":true}' -- 201
if [ -d "$WORK/disk/data/a/b" ]; then ok; else ko "expected nested directory data/a/b"; fi
if [ -s "$WORK/disk-http.log" ]; then ok; else ko "--log file is empty"; fi
stop_server

PHASE=restart
start_server "$WORK/disk" --admin "$ADMIN:$PASS"
t "db survives restart" GET /_all_dbs -- 200 'b.includes("a/b") && b.includes("global/instances") && !b.includes("example-comx")'
t "doc survives restart" GET '/a%2Fb/doc%201' -- 200 'b.kept === true'
t "_find after restart" POST /example%2Dcom%2Fio%2Dcozy%2Dfiles/_find '{"selector":{"t":"f","s":{"$gt":20}},"limit":3}' -- 200 'b.docs.map(d => d.s).join() === "21,22,23"'
stop_server

PHASE=admin-party
AUTH=()
start_server "$WORK/party" --in-memory
t "party _all_dbs" GET /_all_dbs -- 200
t "party PUT db" PUT /newdb -- 201
t "party session" GET /_session -- 200 'b.userCtx.roles.includes("_admin")'
if ! grep -q '"admins"' "$WORK/party/config.json"; then ok; else ko "admin party should have no admins"; fi
stop_server

echo "smoke-test: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
