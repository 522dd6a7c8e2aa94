/* pg_ceiling.c - the PostgreSQL ceiling of costmeshd's group commit.
 *
 * Runs the project's own persistence statement (group_sql of
 * server/ingest.c, extracted to a file at bench time) back to back on one
 * connection, as costmeshd's single writer does: one statement (one
 * transaction, one commit) at a time, ROWS heartbeats each, with unique
 * ids, each for one of AGENTS agents picked at random (as the wrk load
 * does), for SECONDS. Parameters are built in the same text
 * array form as ingest.c's send_group.
 *
 *   pg_ceiling CONNINFO SQLFILE ROWS SECONDS AGENTS PREFIX
 *
 * Prints one line: "rows=N statements=N seconds=S rows_per_s=R
 * ms_per_statement=M". The statement is prepared once, as costmeshd's
 * connections do. With PG_CEILING_EXPLAIN set, the run is followed by the
 * EXPLAIN ANALYZE of one more statement on the same, warm connection (the
 * first executions of a session plan its triggers' queries, which would
 * otherwise be counted). Benchmark tool only: not part of costmeshd. */
#include "auth.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The row columns, then $21 (now) and $22 (agents to write: none, the steady
 * state under load, where seen.c finds every agent written this second),
 * then the columns added later ($23 on: model, cache-write tokens, prices,
 * attributes, money in and out), sent as absent: NULL for a text[]
 * parameter, 0 for the others. How many there are and their types are read
 * from the statement ($N::type[]), so a column added to it does not break
 * the bench. */
enum { NCOLS = 22, MAX_PARAMS = 64 };

/* The $N that `unnest(...) AS t(...)` in sql names `column`, or 0: the
 * arguments of unnest and the names of t pair up in order. */
static int param_of(const char *sql, const char *column)
{
    const char *args = strstr(sql, "unnest("), *names = strstr(sql, " AS t(");
    if (!args || !names || names < args) return 0;
    int at = 0;
    const char *n = strstr(names, column);
    if (!n) return 0;
    for (const char *c = names + 6; c < n; c++) at += *c == ',';
    for (const char *p = strchr(args, '$'); p && p < names; p = strchr(p + 1, '$'))
        if (at-- == 0) return atoi(p + 1);
    return 0;
}

/* The highest $N in sql. */
static int max_param(const char *sql)
{
    int m = 0;
    for (const char *p = strchr(sql, '$'); p; p = strchr(p + 1, '$')) {
        int v = atoi(p + 1);
        if (v > m) m = v;
    }
    return m;
}

typedef struct {
    char *data;
    size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->data = realloc(b->data, b->cap);
        if (!b->data) {
            fprintf(stderr, "pg_ceiling: out of memory\n");
            exit(1);
        }
    }
    memcpy(b->data + b->len, s, n + 1);
    b->len += n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    sbuf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk - 1, f)) > 0) {
        chunk[n] = '\0';
        sb_add(&b, chunk);
    }
    fclose(f);
    return b.data;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s CONNINFO SQLFILE ROWS SECONDS AGENTS PREFIX\n", argv[0]);
        return 2;
    }
    const char *sql = read_file(argv[2]);
    long rows = strtol(argv[3], NULL, 10);
    double seconds = strtod(argv[4], NULL);
    long agents = strtol(argv[5], NULL, 10);
    const char *prefix = argv[6];
    if (!sql || rows < 1 || seconds <= 0 || agents < 1) {
        fprintf(stderr, "pg_ceiling: bad arguments or unreadable %s\n", argv[2]);
        return 2;
    }
    PGconn *pg = PQconnectdb(argv[1]);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "pg_ceiling: %s", PQerrorMessage(pg));
        return 1;
    }
    int nparams = max_param(sql);
    if (nparams < NCOLS || nparams > MAX_PARAMS) {
        fprintf(stderr, "pg_ceiling: %s has %d parameters\n", argv[2], nparams);
        return 2;
    }
    const int nlate = nparams - NCOLS;
    /* The dedupe keys costmeshd hashes for each row (ingest.c). */
    const int key_param = param_of(sql, "key_hex");
    int late_text[MAX_PARAMS - NCOLS];
    for (int c = 0; c < nlate; c++) {
        char cast[32];
        snprintf(cast, sizeof cast, "$%d::text", NCOLS + 1 + c);
        late_text[c] = strstr(sql, cast) != NULL;
    }
    char *explain = NULL;
    if (getenv("PG_CEILING_EXPLAIN")) {
        explain = malloc(strlen(sql) + 64);
        if (!explain) return 1;
        snprintf(explain, strlen(sql) + 64, "EXPLAIN (ANALYZE, BUFFERS) %s", sql);
    }
    PGresult *prep = PQprepare(pg, "group", sql, nparams, NULL);
    if (PQresultStatus(prep) != PGRES_COMMAND_OK) {
        fprintf(stderr, "pg_ceiling: %s", PQerrorMessage(pg));
        return 1;
    }
    PQclear(prep);
    long seq = 0, total = 0, statements = 0;
    double t0 = now_s(), t = t0;
    char tmp[256];
    for (int last = 0; !last;) {
        last = t - t0 >= seconds;
        if (last && !explain) break;
        sbuf cols[NCOLS - 2], late[MAX_PARAMS - NCOLS];
        memset(cols, 0, sizeof cols);
        memset(late, 0, sizeof late);
        time_t now = time(NULL);
        for (int c = 0; c < NCOLS - 2; c++) sb_add(&cols[c], "{");
        for (int c = 0; c < nlate; c++) sb_add(&late[c], "{");
        for (long i = 0; i < rows; i++, seq++) {
            long a = (long)(rand() % agents); /* as bench/load.lua picks them */
            const char *sep = i ? "," : "";
            for (int c = 0; c < NCOLS - 2; c++) sb_add(&cols[c], sep);
            char address[128], id[128], key[CM_HB_KEY_HEX_LEN];
            snprintf(address, sizeof address, "agent://default/%s/a%ld", prefix, a);
            snprintf(id, sizeof id, "%s-%ld-%ld", prefix, (long)t0, seq);
            if (key_param && cm_auth_hb_key(address, id, key) != 0) {
                fprintf(stderr, "pg_ceiling: cannot hash a key\n");
                return 1;
            }
            for (int c = 0; c < nlate; c++)
                sb_add(&late[c], sep),
                    sb_add(&late[c], NCOLS + 1 + c == key_param ? key : late_text[c] ? "NULL" : "0");
            snprintf(tmp, sizeof tmp, "\"%s\"", address);
            sb_add(&cols[0], tmp);
            snprintf(tmp, sizeof tmp, "\"%s\"", id);
            sb_add(&cols[1], tmp);
            snprintf(tmp, sizeof tmp, "\"int_a%ld\"", a);
            sb_add(&cols[2], tmp);
            for (int c = 3; c <= 7; c++) sb_add(&cols[c], "NULL");
            snprintf(tmp, sizeof tmp, "%lld", (long long)now);
            sb_add(&cols[8], tmp);
            sb_add(&cols[9], "3000000"); /* cost_usd 0.003 */
            sb_add(&cols[10], "2100");
            sb_add(&cols[11], "850");
            for (int c = 12; c <= 17; c++) sb_add(&cols[c], c == 13 ? "4" : "0");
            sb_add(&cols[18], "NULL");
            snprintf(tmp, sizeof tmp, "%ld", i);
            sb_add(&cols[19], tmp);
        }
        const char *params[MAX_PARAMS];
        for (int c = 0; c < NCOLS - 2; c++) {
            sb_add(&cols[c], "}");
            params[c] = cols[c].data;
        }
        for (int c = 0; c < nlate; c++) {
            sb_add(&late[c], "}");
            params[NCOLS + c] = late[c].data;
        }
        char nowbuf[24];
        snprintf(nowbuf, sizeof nowbuf, "%lld", (long long)now);
        params[NCOLS - 2] = nowbuf;
        params[NCOLS - 1] = "{}";
        if (last) {
            PGresult *ex = PQexecParams(pg, explain, nparams, NULL, params, NULL, NULL, 0);
            for (int r = 0; r < PQntuples(ex); r++) printf("%s\n", PQgetvalue(ex, r, 0));
            if (PQresultStatus(ex) != PGRES_TUPLES_OK) fprintf(stderr, "pg_ceiling: %s", PQerrorMessage(pg));
            PQclear(ex);
            for (int c = 0; c < NCOLS - 2; c++) free(cols[c].data);
            for (int c = 0; c < nlate; c++) free(late[c].data);
            break;
        }
        PGresult *res = PQexecPrepared(pg, "group", nparams, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            fprintf(stderr, "pg_ceiling: %s", PQerrorMessage(pg));
            PQclear(res);
            PQfinish(pg);
            return 1;
        }
        PQclear(res);
        for (int c = 0; c < NCOLS - 2; c++) free(cols[c].data);
        for (int c = 0; c < nlate; c++) free(late[c].data);
        total += rows;
        statements++;
        t = now_s();
    }
    double el = t - t0;
    printf("rows=%ld statements=%ld seconds=%.2f rows_per_s=%.0f ms_per_statement=%.2f\n", total, statements, el,
           (double)total / el, el * 1000.0 / (double)statements);
    PQfinish(pg);
    return 0;
}
