/* call.h - one request to the costmesh server named by the environment
 * (COSTMESH_URL, COSTMESH_API_KEY), its JSON reply, and the one-line error
 * report; plus the helpers that read reply fields as the server wrote them.
 *
 * Errors are reported at the door: when cmctl_call fails it has already
 * printed one line to stderr, so a command just returns the code. */
#ifndef CMCTL_CALL_H
#define CMCTL_CALL_H

#include "sbuf.h"

#include <stddef.h>

#include <json-c/json.h>

#define CMCTL_DEFAULT_URL "http://127.0.0.1:8080"

typedef struct cmctl_reply {
    long status;
    char *raw;         /* owned: the body exactly as sent ("" when empty) */
    json_object *json; /* owned: the parsed body, NULL when empty or not JSON */
} cmctl_reply;

/* METHOD path (already percent-encoded; starts with '/') with body (owned by
 * the caller, may be NULL) serialized as JSON. extra_header may be NULL.
 * CMCTL_OK: a 2xx answer is in *out. CMCTL_EHTTP: a 4xx/5xx answer is in
 * *out and its error line was printed. Any other code: *out is empty and a
 * line was printed. Always free *out with cmctl_reply_free. */
int cmctl_call(const char *method, const char *path, json_object *body, const char *extra_header,
               cmctl_reply *out);

void cmctl_reply_free(cmctl_reply *r);

/* Writes the body as the server sent it, plus a newline, to stdout (--json). */
int cmctl_print_raw(const cmctl_reply *r);

/* The shape of every read command: GET the path in `path` (freed here),
 * then print the body as sent (`json`) or through show(), reporting what
 * show() fails with. Returns CMCTL_OK or the failure already reported.
 * show NULL: the body is printed as sent, JSON or not (a CSV export). */
int cmctl_get_show(cmctl_buf *path, int json, int (*show)(json_object *reply));

/* One column of cmctl_print_rows: its header, the field it shows, the text
 * for an absent or null field (NULL prints "-"), and right alignment. */
typedef struct {
    const char *head, *field, *missing;
    int right;
} cmctl_col;

/* Prints reply[array], an array of objects, as a table with one column per
 * cols entry. CMCTL_EREPLY when reply has no such array. */
int cmctl_print_rows(json_object *reply, const char *array, const cmctl_col *cols, size_t ncols);

/* Text of obj[key] as the server wrote it: strings as they are, numbers with
 * their exact digits (json-c keeps a number's text; a double is never
 * formatted here), arrays and objects as compact JSON, null or absent as
 * dflt. Borrowed from obj. */
const char *cmctl_jtext(json_object *obj, const char *key, const char *dflt);

/* obj[key] when it has the given type, else NULL. Borrowed. */
json_object *cmctl_jget(json_object *obj, const char *key, json_type type);

/* Request bodies. Each adds key to obj (which takes ownership of the new
 * value) and returns CMCTL_OK or CMCTL_ENOMEM; a NULL text adds nothing.
 * cmctl_jadd_number puts number text (checked by cmctl_arg_number) into the
 * body verbatim, so "0.1" is sent as 0.1 and never as a rounded double. */
int cmctl_jadd_str(json_object *obj, const char *key, const char *text);
int cmctl_jadd_number(json_object *obj, const char *key, const char *text);
int cmctl_jadd_int(json_object *obj, const char *key, long long v);
/* Appends number text to an array (as cmctl_jadd_number). */
int cmctl_jpush_number(json_object *arr, const char *text);

/* Prints "costmeshctl: WHAT" to stderr; returns rc. */
int cmctl_fail(int rc, const char *what);

#endif
