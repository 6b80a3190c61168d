/*
 * error.c - the error codes' names and messages, and the errno kept behind
 * FAAS_ESYS.
 *
 * Both come from FAAS_ERRNO_MAP in faas.h, the one table; the switches have
 * no default case, so a code added to the enum without a message is a
 * compiler warning (and warnings are errors).
 *
 * FAAS_ESYS stands for many errnos; the public calls that can return it
 * pass their result through faas_rt_sys_error on the way out, while errno
 * is still the failing call's, and faas_runtime_last_errno gives it back.
 *
 * Owns one field of the runtime, rt->last_errno, written only by
 * faas_rt_sys_error. Called by the host (faas_strerror, faas_strerror_name,
 * faas_runtime_last_errno), by the files that name codes in log records and
 * destination records (async.c, batch.c, idem.c, source.c, lambda_api.c) and,
 * for faas_rt_sys_error, by http.c, watch.c and runtime.c. Calls only libc
 * (errno); any thread may call the name and message functions.
 */
#include <errno.h>

#include "faas_int.h"

int faas_rt_sys_error(struct faas_runtime *rt, int rc)
{
    if (rc == FAAS_ESYS && rt)
        rt->last_errno = errno;
    return rc;
}

int faas_runtime_last_errno(const struct faas_runtime *rt)
{
    return rt ? rt->last_errno : 0;
}

const char *faas_strerror(int err)
{
    switch ((enum faas_error)err) {
#define FAAS_ERR_MSG_(name, value, msg)                                     \
    case FAAS_##name:                                                       \
        return msg;
        FAAS_ERRNO_MAP(FAAS_ERR_MSG_)
#undef FAAS_ERR_MSG_
    case FAAS_OK:
        return "success";
    }
    return "unknown error";
}

const char *faas_strerror_name(int err)
{
    switch ((enum faas_error)err) {
#define FAAS_ERR_NAME_(name, value, msg)                                    \
    case FAAS_##name:                                                       \
        return #name;
        FAAS_ERRNO_MAP(FAAS_ERR_NAME_)
#undef FAAS_ERR_NAME_
    case FAAS_OK:
        return "OK";
    }
    return NULL;
}

const char *faas_version(void)
{
    return FAAS_VERSION_STRING;
}
