/*
 * fuzz_event_stream.c - libFuzzer target for the AWS event-stream codec
 * (lib/event_stream.c): the input is read as a sequence of messages, as a
 * client reads an InvokeWithResponseStream reply; every message read must
 * lie inside the input, its headers must be walkable, and writing its
 * string headers and payload back must read back the same.
 *
 *   clang -fsanitize=fuzzer,address -Iinclude -Ilib tests/fuzz/fuzz_event_stream.c lib/\*.c \
 *       $(pkg-config --cflags --libs libevent jansson libsodium) -lpthread -ldl
 *   ./a.out -max_total_time=30
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "event_stream.h"
#include "faas_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip(const struct faas_es_view *m)
{
    static const char *const names[] = { ":event-type", ":content-type", ":message-type" };
    struct faas_es_header h[3];
    char values[3][256];
    size_t i, n = 0, vl;
    struct evbuffer *b = evbuffer_new();
    struct faas_es_view back;
    long r;

    if (!b)
        return;
    for (i = 0; i < 3; i++) {
        const char *v = faas_es_header_get(m, names[i], &vl);
        if (v && vl < sizeof values[i] && !memchr(v, '\0', vl)) {
            memcpy(values[i], v, vl);
            values[i][vl] = '\0';
            h[n].name = names[i];
            h[n++].value = values[i];
        }
    }
    if (faas_es_write(b, h, n, m->payload, m->payload_len) == 0) {
        size_t len = evbuffer_get_length(b);
        const unsigned char *p = evbuffer_pullup(b, -1);
        r = faas_es_read(p, len, &back);
        if (r != (long)len || back.payload_len != m->payload_len ||
            memcmp(back.payload, m->payload, m->payload_len) != 0)
            abort();
    }
    evbuffer_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    struct faas_es_view m;
    long n;

    (void)faas_crc32(0, data, size);
    while (off < size && (n = faas_es_read(data + off, size - off, &m)) > 0) {
        if ((size_t)n > size - off || m.payload + m.payload_len > data + off + (size_t)n ||
            m.headers < data + off)
            abort();
        round_trip(&m);
        off += (size_t)n;
    }
    return 0;
}
