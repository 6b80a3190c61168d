/*
 * event_stream.h - the AWS event stream encoding
 * (application/vnd.amazon.eventstream), which InvokeWithResponseStream
 * answers in, and the CRC32 its messages carry (event_stream.c).
 *
 * A message, every integer big-endian:
 *
 *   total length (4) | headers length (4) | prelude CRC32 (4)
 *   headers: name length (1) | name | value type (1) | value ...
 *   payload
 *   message CRC32 (4): of every byte before it
 *
 * The prelude CRC covers the first 8 bytes. Only string values (type 7:
 * length (2) | bytes) are written; the parser reads every type the
 * encoding defines, so tests can check what a client would.
 *
 * Included by lambda_api.c, http_stream.c and the tests.
 */
#ifndef FAAS_EVENT_STREAM_H
#define FAAS_EVENT_STREAM_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* Bytes of a message beyond its headers and payload. */
#define FAAS_ES_OVERHEAD 16u
/* The most a message may be (the encoding's own limit: 16 MiB). */
#define FAAS_ES_MESSAGE_MAX ((size_t)16 * 1024 * 1024)

/* CRC-32 (ISO-HDLC, zlib's crc32): crc 0 to start, the previous value to
 * go on. */
uint32_t faas_crc32(uint32_t crc, const void *data, size_t len);

struct faas_es_header {
    const char *name;  /* at most 255 bytes */
    const char *value; /* a string: at most 65535 bytes */
};

/* Appends one message to out. Returns 0, FAAS_EINVAL (a name or value too
 * long, the message over FAAS_ES_MESSAGE_MAX) or FAAS_ENOMEM. */
int faas_es_write(struct evbuffer *out, const struct faas_es_header *hdrs, size_t nhdrs,
                  const void *payload, size_t len);

/* One message read in place. */
struct faas_es_view {
    const unsigned char *headers; /* the headers' bytes */
    size_t headers_len;
    const unsigned char *payload;
    size_t payload_len;
};

/*
 * Reads the message at the start of buf[0..len). Returns its total length
 * (> 0) and fills *m; 0 when more bytes are needed; FAAS_EPARSE when it is
 * malformed (a length out of bounds, a CRC that does not match, headers
 * that do not parse).
 */
long faas_es_read(const void *buf, size_t len, struct faas_es_view *m);

/* The string value of header `name` in m, or NULL; its length in *vlen. */
const char *faas_es_header_get(const struct faas_es_view *m, const char *name, size_t *vlen);

#endif /* FAAS_EVENT_STREAM_H */
