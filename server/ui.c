#include "ui.h"
#include "buf.h"
#include "error.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name; /* after /ui/; "" is the page at / */
    const char *path; /* under the web directory */
    const char *type;
} asset;

static const asset assets[] = {
    {"", "index.html", "text/html; charset=utf-8"},
    {"app.js", "app.js", "text/javascript; charset=utf-8"},
    {"app.css", "app.css", "text/css; charset=utf-8"},
    {"chart.umd.js", "node_modules/chart.js/dist/chart.umd.js", "text/javascript; charset=utf-8"},
};

enum { NASSETS = sizeof assets / sizeof assets[0] };

struct cm_ui {
    cm_ui_file files[NASSETS]; /* data owned; NULL when the file was missing */
    cm_ui_file openapi;        /* likewise */
};

/* The whole file at path, malloc'd; NULL when it cannot be read. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    cm_buf b;
    cm_buf_init(&b);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) cm_buf_add(&b, chunk, n);
    fclose(f);
    return cm_buf_take(&b, len);
}

int cm_ui_load(const char *dir, const char *openapi, cm_ui **out)
{
    cm_ui *ui = calloc(1, sizeof *ui);
    if (!ui) return CM_ENOMEM;
    for (int i = 0; i < NASSETS; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, assets[i].path);
        ui->files[i].type = assets[i].type;
        ui->files[i].data = read_file(path, &ui->files[i].len);
    }
    if (!ui->files[0].data) cm_log(CM_LOG_INFO, "event=dashboard_missing dir=%s", dir);
    /* RFC 9512's application/yaml would make browsers download it. */
    ui->openapi.type = "text/yaml; charset=utf-8";
    ui->openapi.data = read_file(openapi, &ui->openapi.len);
    if (!ui->openapi.data) cm_log(CM_LOG_INFO, "event=openapi_missing path=%s", openapi);
    *out = ui;
    return CM_OK;
}

const cm_ui_file *cm_ui_find(const cm_ui *ui, const char *name)
{
    for (int i = 0; i < NASSETS; i++)
        if (strcmp(assets[i].name, name) == 0) return ui->files[i].data ? &ui->files[i] : NULL;
    return NULL;
}

const cm_ui_file *cm_ui_openapi(const cm_ui *ui)
{
    return ui->openapi.data ? &ui->openapi : NULL;
}

void cm_ui_free(cm_ui *ui)
{
    if (!ui) return;
    for (int i = 0; i < NASSETS; i++) free((char *)ui->files[i].data);
    free((char *)ui->openapi.data);
    free(ui);
}
