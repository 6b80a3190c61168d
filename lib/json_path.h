/*
 * json_path.h - dotted paths into JSON values (json_path.c).
 *
 * Pure, jansson only: included by idem.c, batch.c, source.c and the tests,
 * not by faas_int.h.
 */
#ifndef FAAS_JSON_PATH_H
#define FAAS_JSON_PATH_H

#include <jansson.h>

/* 1 when `path` is a well-formed dotted path: not empty, no leading or
 * trailing dot, no two dots in a row. */
int faas_json_path_valid(const char *path);

/*
 * The value at `path` in `root` (see json_path.c for the walk), as a new
 * reference, or NULL when there is none. JSON null is returned as found.
 */
json_t *faas_json_path(json_t *root, const char *path);

#endif
