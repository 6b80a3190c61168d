# The functions of the bash runtime's tests. Each gets the event (JSON text)
# as $1 and prints its response; a non-zero status makes it an error.

# A JSON string of $1.
jstr() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

# The value of a header of the current /next answer.
header() {
  grep -Fi "$1:" "$HEADERS" | head -n 1 | cut -d: -f2- | tr -d '\r' | sed 's/^ //'
}

# What the runtime was started with.
env_info() {
  printf '{"api":%s,"handler":%s,"task_root":%s,"name":%s,"version":%s,"memory":%s,' \
    "$(jstr "$AWS_LAMBDA_RUNTIME_API")" "$(jstr "$_HANDLER")" "$(jstr "$LAMBDA_TASK_ROOT")" \
    "$(jstr "$AWS_LAMBDA_FUNCTION_NAME")" "$(jstr "$AWS_LAMBDA_FUNCTION_VERSION")" \
    "$(jstr "$AWS_LAMBDA_FUNCTION_MEMORY_SIZE")"
  printf '"group":%s,"stream":%s,"region":%s,"default_region":%s,"tz":%s,"path":%s,' \
    "$(jstr "$AWS_LAMBDA_LOG_GROUP_NAME")" "$(jstr "$AWS_LAMBDA_LOG_STREAM_NAME")" \
    "$(jstr "$AWS_REGION")" "$(jstr "$AWS_DEFAULT_REGION")" "$(jstr "$TZ")" "$(jstr "$PATH")"
  printf '"lang":%s,"exec_env":%s,"custom":%s,"cwd":%s,"pid":%s}' \
    "$(jstr "$LANG")" "$(jstr "$AWS_EXECUTION_ENV")" "$(jstr "${CUSTOM_VAR:-}")" \
    "$(jstr "$PWD")" "$$"
}

# The Lambda-Runtime-* headers of this invocation.
headers_info() {
  printf '{"rid":%s,"deadline":%s,"arn":%s,"trace":%s,"cc":%s,"ctype":%s}' \
    "$(jstr "$(header Lambda-Runtime-Aws-Request-Id)")" \
    "$(header Lambda-Runtime-Deadline-Ms)" \
    "$(jstr "$(header Lambda-Runtime-Invoked-Function-Arn)")" \
    "$(jstr "$(header Lambda-Runtime-Trace-Id)")" \
    "$(jstr "$(header Lambda-Runtime-Client-Context)")" \
    "$(jstr "$(header Content-Type)")"
}

# Waits (bounded) until the test opens the gate, after saying it started
# (the file holds the request id; renamed into place, so never seen empty).
gate() {
  local i=0
  printf '%s' "$REQUEST_ID" > "$GATE_DIR/.rid.$$"
  mv "$GATE_DIR/.rid.$$" "$GATE_DIR/started.$$"
  while [ ! -e "$GATE_DIR/open" ] && [ $i -lt 1000 ]; do
    sleep 0.02
    i=$((i + 1))
  done
  echo "\"released $$\""
}

# Sends the requests of $GATE_DIR/probes ("METHOD PATH [BODY]" a line) to
# the Runtime API from inside the instance; prints [{code, ctype, body}].
probe() {
  local m p b out code ctype body sep=''
  out="$(mktemp)"
  printf '['
  while read -r m p b; do
    if [ -n "$b" ]; then
      code=$(curl -sS -o "$out" -w '%{http_code} %{content_type}' -X "$m" \
        "http://${AWS_LAMBDA_RUNTIME_API}$p" --data-raw "$b")
    else
      code=$(curl -sS -o "$out" -w '%{http_code} %{content_type}' -X "$m" \
        "http://${AWS_LAMBDA_RUNTIME_API}$p")
    fi
    ctype=${code#* }
    body=$(cat "$out")
    printf '%s{"code":%s,"ctype":%s,"body":%s}' "$sep" "${code%% *}" "$(jstr "$ctype")" \
      "${body:-null}"
    sep=','
  done < "$GATE_DIR/probes"
  printf ']'
  rm -f "$out"
}

handler() {
  EVENT_DATA=$1
  case "$EVENT_DATA" in
    '"sleep"') sleep 30; echo '"late"' ;;
    '"crash"') kill -TERM $$ ;;
    '"fail"')
      echo "failing $REQUEST_ID" >&2
      echo '{"errorMessage":"something broke","errorType":"MyError","stackTrace":["handler at function.sh"]}'
      return 1 ;;
    '"env"') env_info ;;
    '"headers"') headers_info ;;
    '"gate"') gate ;;
    '"logs"')
      echo "to stderr $REQUEST_ID" >&2
      echo "to stdout $REQUEST_ID" > /proc/$$/fd/1
      echo '"logged"' ;;
    '"text"') echo 'not json at all' ;;
    '"longline"')
      printf '%*s\n' 10000 '' | tr ' ' y >&2
      echo "after $REQUEST_ID" >&2
      echo '"long"' ;;
    '"probe"') probe ;;
    '"failnul"')
      echo '{"errorMessage":"a\u0000b","errorType":"Nul.Error"}'
      return 1 ;;
    '"empty"') ;;
    '{"big":'*)
      local n=${EVENT_DATA#*:}
      n=${n%\}}
      printf '"%*s"' "$n" '' | tr ' ' x ;;
    *)
      echo "transforming $REQUEST_ID" >&2
      echo "{\"echo\":$EVENT_DATA,\"bytes\":${#EVENT_DATA},\"pid\":$$}" ;;
  esac
}
