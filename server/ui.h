/* ui.h - the dashboard's files and the OpenAPI document, read once at start
 * and served from memory: only the names in its table exist, so no path
 * from a request reaches the file system. */
#ifndef CM_UI_H
#define CM_UI_H

#include <stddef.h>

typedef struct cm_ui cm_ui;

/* One file as the HTTP front sends it. All borrowed from the cm_ui. */
typedef struct {
    const char *data;
    size_t len;
    const char *type; /* the Content-Type */
} cm_ui_file;

/* Reads the dashboard under dir (COSTMESH_WEB_DIR) and the OpenAPI document
 * at openapi (COSTMESH_OPENAPI_FILE). A missing file is not an error: it is
 * answered 404 later, and a missing page or document is logged once. CM_OK
 * or CM_ENOMEM. */
int cm_ui_load(const char *dir, const char *openapi, cm_ui **out);
/* The file named `name` ("" for the page at /, else what follows /ui/), or
 * NULL when there is no such file or it was missing at start. Thread-safe:
 * the files never change after cm_ui_load. */
const cm_ui_file *cm_ui_find(const cm_ui *ui, const char *name);
/* The OpenAPI document, or NULL when it was missing at start. */
const cm_ui_file *cm_ui_openapi(const cm_ui *ui);
/* NULL is a no-op. */
void cm_ui_free(cm_ui *ui);

#endif
