/* table.c - aligned text columns (see table.h). */
#include "table.h"

#include "ctl.h"

#include <stdlib.h>
#include <string.h>

#define MAX_COLS 16

struct cmctl_table {
    size_t ncols;
    size_t nrows;      /* including the header row when there is one */
    size_t cap;
    char **cells;      /* nrows * ncols owned strings */
    size_t width[MAX_COLS];
    int right[MAX_COLS];
    int has_header;
};

cmctl_table *cmctl_table_new(size_t ncols, const char *const *headers)
{
    if (ncols == 0 || ncols > MAX_COLS) return NULL;
    cmctl_table *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ncols = ncols;
    if (headers) {
        if (cmctl_table_add(t, headers) != CMCTL_OK) {
            cmctl_table_free(t);
            return NULL;
        }
        t->has_header = 1;
    }
    return t;
}

void cmctl_table_right(cmctl_table *t, size_t col)
{
    if (t && col < t->ncols) t->right[col] = 1;
}

int cmctl_table_add(cmctl_table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **c = realloc(t->cells, cap * t->ncols * sizeof *c);
        if (!c) return CMCTL_ENOMEM;
        t->cells = c;
        t->cap = cap;
    }
    char **row = t->cells + t->nrows * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        row[i] = strdup(cells[i] ? cells[i] : "-");
        if (!row[i]) {
            while (i > 0) free(row[--i]);
            return CMCTL_ENOMEM;
        }
        size_t w = strlen(row[i]);
        if (w > t->width[i]) t->width[i] = w;
    }
    t->nrows++;
    return CMCTL_OK;
}

static void pad(FILE *f, size_t n)
{
    while (n-- > 0) fputc(' ', f);
}

int cmctl_table_print(const cmctl_table *t, FILE *f)
{
    for (size_t r = 0; r < t->nrows; r++) {
        char *const *row = t->cells + r * t->ncols;
        for (size_t i = 0; i < t->ncols; i++) {
            size_t w = strlen(row[i]);
            int last = i + 1 == t->ncols;
            if (i) fputs("  ", f);
            if (t->right[i]) pad(f, t->width[i] - w);
            fputs(row[i], f);
            /* No trailing blanks after the last column. */
            if (!t->right[i] && !last) pad(f, t->width[i] - w);
        }
        fputc('\n', f);
    }
    return ferror(f) ? CMCTL_EIO : CMCTL_OK;
}

void cmctl_table_free(cmctl_table *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++) free(t->cells[i]);
    free(t->cells);
    free(t);
}
