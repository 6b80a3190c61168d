# echo-sh/function.sh - the handler the bootstrap loads (_HANDLER
# "function.handler"). It gets the event's JSON text as $1, logs it to
# stderr, and answers with JSON that wraps it. ECHO_GREETING comes from the
# function's "env" in the gateway's config.

handler() {
    local event="$1"
    echo "event: $event" >&2
    printf '{"greeting":"%s","function":"%s","echo":%s}\n' \
        "${ECHO_GREETING:-hello}" "${AWS_LAMBDA_FUNCTION_NAME:-?}" "${event:-null}"
}
