/*
 * lambda_api.c - Lambda's Invoke API on the HTTP gateway.
 * (Being written.)
 */
#include <event2/http.h>

#include "faas_int.h"

void faas_invoke_api_request(struct faas_runtime *rt, struct evhttp_request *req)
{
    (void)rt;
    evhttp_send_error(req, 501, "Not Implemented");
}
