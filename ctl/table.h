/* table.h - columns of text printed with aligned widths.
 *
 * Cells are copied in, so callers may pass text borrowed from a JSON reply
 * they free before printing. */
#ifndef CMCTL_TABLE_H
#define CMCTL_TABLE_H

#include <stddef.h>
#include <stdio.h>

typedef struct cmctl_table cmctl_table;

/* Constructs a table of ncols columns. headers (ncols names) may be NULL for
 * a table without a header row. NULL when out of memory. */
cmctl_table *cmctl_table_new(size_t ncols, const char *const *headers);

/* Right-aligns column col (numbers, so the digits line up). */
void cmctl_table_right(cmctl_table *t, size_t col);

/* Appends a row of ncols cells; a NULL cell prints as "-". */
int cmctl_table_add(cmctl_table *t, const char *const *cells);

/* Prints the header and rows, columns two spaces apart. */
int cmctl_table_print(const cmctl_table *t, FILE *f);

/* Destroys t; NULL is fine. */
void cmctl_table_free(cmctl_table *t);

#endif
