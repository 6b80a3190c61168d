/*
 * floor.c - the floor of tools/footprint.sh's resident sets: a bare evhttp
 * server (libevent and libc, nothing of libfaas) that answers 200 to every
 * request, read the same way as the gateway. Prints its port like the
 * gateway: "listening on http://127.0.0.1:PORT".
 */
#include <stdio.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>

static void answer(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evhttp_send_reply(req, 200, "OK", NULL);
}

int main(void)
{
    struct event_base *base = event_base_new();
    struct evhttp *http = base ? evhttp_new(base) : NULL;
    struct evhttp_bound_socket *s;
    struct sockaddr_storage ss;
    ev_socklen_t len = sizeof ss;

    if (!http || !(s = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0)) ||
        getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&ss, &len) != 0)
        return 1;
    evhttp_set_gencb(http, answer, NULL);
    printf("listening on http://127.0.0.1:%u\n",
           (unsigned)ntohs(((struct sockaddr_in *)&ss)->sin_port));
    fflush(stdout);
    event_base_dispatch(base);
    evhttp_free(http);
    event_base_free(base);
    return 0;
}
