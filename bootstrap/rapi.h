/*
 * rapi.h - faas-bootstrap's client of the AWS Lambda Runtime API
 * (2018-06-01): one keep-alive HTTP/1.1 connection, blocking (rapi.c).
 *
 * The bootstrap does one thing at a time, so the client blocks: a /next
 * waits as long as the API takes to hand over an event (Lambda freezes the
 * process meanwhile), and a post waits for its answer. Only the connect
 * has a bound (RAPI_CONNECT_MS), as aws-lambda-cpp's has.
 *
 * Every request goes on the one connection, reopened when it is not open.
 * A request on a kept-alive connection that fails before any byte of the
 * answer came is sent once more on a new connection (the server may have
 * closed the idle connection: curl, under aws-lambda-cpp, does the same);
 * a request that still fails is the caller's to retry or give up.
 *
 * Used by bootstrap.c only.
 */
#ifndef FAAS_BOOTSTRAP_RAPI_H
#define FAAS_BOOTSTRAP_RAPI_H

#include <signal.h>
#include <stddef.h>

/* The connect's bound, in milliseconds (aws-lambda-cpp: 1 s). */
#define RAPI_CONNECT_MS 1000
/* Bytes of an answer's status line and headers at most. */
#define RAPI_HEAD_MAX (64u * 1024u)
/* Bytes of an answer's body at most: an event is at most 6 MiB on Lambda,
 * so this leaves room and still bounds what a broken server costs. */
#define RAPI_BODY_MAX (32u * 1024u * 1024u)

/* The Runtime API's paths. */
#define RAPI_PREFIX "/2018-06-01/runtime/"
#define RAPI_ERROR_TYPE "Lambda-Runtime-Function-Error-Type"
#define RAPI_ERROR_BODY "Lambda-Runtime-Function-Error-Body"

/* Set by rapi_interrupt: a blocking call a signal interrupts then fails
 * instead of going on. */
extern volatile sig_atomic_t rapi_stop;

/* For a signal handler (async-signal-safe): sets rapi_stop and ends a
 * GET /next that waits, now or when it starts. */
void rapi_interrupt(void);

struct rapi {
    char host[256];      /* from AWS_LAMBDA_RUNTIME_API: "host:port" */
    char port[16];
    char user_agent[64];
    int fd;              /* -1: not connected */
    int reused;          /* fd has carried an answer already */
    char *in;            /* bytes read and not yet used: in[off..len) */
    size_t in_len, in_off, in_cap;
    unsigned connects;   /* connections opened so far */
};

/* An answer. Header values and the body are owned (NULL when absent);
 * rapi_resp_clear frees them. */
struct rapi_resp {
    int status;
    char *request_id;      /* Lambda-Runtime-Aws-Request-Id */
    char *deadline_ms;     /* Lambda-Runtime-Deadline-Ms */
    char *function_arn;    /* Lambda-Runtime-Invoked-Function-Arn */
    char *trace_id;        /* Lambda-Runtime-Trace-Id */
    char *client_context;  /* Lambda-Runtime-Client-Context */
    char *body;            /* NUL-terminated after body_len bytes */
    size_t body_len;
};

/* Parses "host:port" ("[v6]:port" too) into c; not connected yet.
 * Returns 0, or -1 for an address without a port or too long. */
int rapi_init(struct rapi *c, const char *address, const char *user_agent);
/* Closes the connection and frees the buffer. */
void rapi_free(struct rapi *c);
void rapi_resp_clear(struct rapi_resp *r);

/* GET /next into r (filled, or cleared, in every case). 0 (any status:
 * r->status says), or -1: no answer (connect, send or receive failed, or
 * the answer was malformed). */
int rapi_next(struct rapi *c, struct rapi_resp *r);

/* POSTs body (len bytes, application/json) to RAPI_PREFIX + path with,
 * when error_type is not NULL, the Lambda-Runtime-Function-Error-Type
 * header. 0 with r filled, or -1 as rapi_next. */
int rapi_post(struct rapi *c, const char *path, const char *error_type, const char *body,
              size_t len, struct rapi_resp *r);

/*
 * A streamed response (Lambda's response streaming): rapi_stream_begin
 * sends the request's head (Lambda-Runtime-Function-Response-Mode:
 * streaming, chunked, the error trailers announced), rapi_stream_chunk one
 * chunk at once (len 0 sends nothing: an empty chunk would end the body),
 * rapi_stream_end the last chunk, with the trailers
 * Lambda-Runtime-Function-Error-Type and -Error-Body (error_body is sent
 * base64-encoded) when error_type is not NULL, and reads the answer.
 * Each returns 0, or -1 when the connection failed (it is then closed;
 * the request cannot be retried, its head being gone).
 */
int rapi_stream_begin(struct rapi *c, const char *path);
int rapi_stream_chunk(struct rapi *c, const void *data, size_t len);
int rapi_stream_end(struct rapi *c, const char *error_type, const char *error_body,
                    struct rapi_resp *r);

#endif /* FAAS_BOOTSTRAP_RAPI_H */
