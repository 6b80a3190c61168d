/*
 * json_path.c - the one walker of dotted paths into events: an
 * idempotency key_path or validate_path (idem.c), a mapping's
 * partition_key_path and the record ids batches are named by (batch.c),
 * and the check of a path at faas_map (source.c).
 *
 * A path is parts separated by dots, walked from the top:
 *  - objects: a part names a member; the exact name first, then the first
 *    member whose name matches ignoring ASCII case (HTTP headers arrive
 *    lower-cased: "headers.Idempotency-Key" finds "idempotency-key");
 *  - arrays: a part of 1 to 9 decimal digits is an index from 0;
 *  - strings that hold JSON: when the path goes on past a string, the
 *    string is parsed (an object or an array; \u0000 allowed) and the walk
 *    continues inside it, so "body.order_id" reaches into an API Gateway
 *    body and an SQS message's body. At most 8 strings per walk are parsed;
 *    a string that is not JSON ends the walk.
 * A member whose name holds a dot cannot be reached. Pure: no runtime, no
 * clock; allocates only to parse strings. Calls nothing else of lib/.
 */
#include <string.h>
#include <strings.h>

#include "json_path.h"

#define PARSED_MAX 8

int faas_json_path_valid(const char *path)
{
    size_t n = path ? strlen(path) : 0;
    return n > 0 && path[0] != '.' && path[n - 1] != '.' && !strstr(path, "..");
}

static json_t *member(json_t *obj, const char *name, size_t len)
{
    const char *k;
    json_t *v;

    if ((v = json_object_getn(obj, name, len)) != NULL)
        return v;
    json_object_foreach(obj, k, v) {
        if (strlen(k) == len && strncasecmp(k, name, len) == 0)
            return v;
    }
    return NULL;
}

static json_t *element(json_t *arr, const char *part, size_t len)
{
    size_t idx = 0, k;

    if (len == 0 || len > 9)
        return NULL;
    for (k = 0; k < len; k++) {
        if (part[k] < '0' || part[k] > '9')
            return NULL;
        idx = idx * 10 + (size_t)(part[k] - '0');
    }
    return json_array_get(arr, idx);
}

json_t *faas_json_path(json_t *root, const char *path)
{
    json_t *cur = root, *parsed[PARSED_MAX], *found;
    size_t nparsed = 0, i;
    const char *p = path;

    if (!root || !path)
        return NULL;
    while (cur && *p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (json_is_string(cur) && nparsed < PARSED_MAX) {
            json_t *doc = json_loadb(json_string_value(cur), json_string_length(cur),
                                     JSON_ALLOW_NUL, NULL);
            if (!doc) {
                cur = NULL;
                break;
            }
            parsed[nparsed++] = doc;
            cur = doc;
        }
        if (json_is_object(cur))
            cur = member(cur, p, len);
        else if (json_is_array(cur))
            cur = element(cur, p, len);
        else
            cur = NULL;
        p += len;
        if (*p == '.')
            p++;
    }
    /* A reference of our own before the parsed documents go: what was
     * found inside one lives on. */
    found = cur && !*p ? json_incref(cur) : NULL;
    for (i = 0; i < nparsed; i++)
        json_decref(parsed[i]);
    return found;
}
