/* pg_ceiling.c - the PostgreSQL ceiling of costmeshd's statements that
 * store heartbeats.
 *
 * Runs one of the project's own statements (linked from server/hbrow.c,
 * with its columns made by cm_hbrow_columns, as the server makes them) back
 * to back on one connection: one statement (one transaction, one commit) at
 * a time, ROWS heartbeats each, with unique ids, each for one of AGENTS
 * agents picked at random (as the wrk load does), for SECONDS.
 *
 *   pg_ceiling CONNINFO STATEMENT ROWS SECONDS AGENTS PREFIX
 *
 * STATEMENT is "group" (cm_hbrow_group_sql, the postgres-mode group commit,
 * ingest.c) or "persist" (cm_hbrow_persist_sql, the redis-mode persister's
 * batch, persist.c). Both are sent with no agent to register ($22 empty):
 * the steady state under load, where seen.c finds every agent written this
 * second. A persist batch's rows carry queue entries above persist_mark,
 * which each batch moves, so the run reads the mark first and numbers its
 * entries on from there; none is left out as a duplicate ($36/$37 empty).
 *
 * Prints one line: "rows=N statements=N seconds=S rows_per_s=R
 * ms_per_statement=M". The statement is prepared once, as costmeshd's
 * connections do. With PG_CEILING_EXPLAIN set, the run is followed by the
 * EXPLAIN ANALYZE of one more statement on the same, warm connection (the
 * first executions of a session plan its triggers' queries, which would
 * otherwise be counted). Benchmark tool only: not part of costmeshd. */
#include "buf.h"
#include "codec.h"
#include "error.h"
#include "hbrow.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

enum { MAX_PARAMS = CM_HBROW_PERSIST_PARAMS };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The persist batch's entry columns: rows entries from (ms, *seq) on, the
 * same order as its rows; *seq moves past them. */
static void add_entries(cm_buf *ms_col, cm_buf *seq_col, uint64_t ms, uint64_t *seq, long rows)
{
    cm_buf_init(ms_col);
    cm_buf_init(seq_col);
    cm_buf_adds(ms_col, "{");
    cm_buf_adds(seq_col, "{");
    for (long i = 0; i < rows; i++, (*seq)++) {
        cm_buf_addf(ms_col, "%s%" PRIu64, i ? "," : "", ms);
        cm_buf_addf(seq_col, "%s%" PRIu64, i ? "," : "", *seq);
    }
    cm_buf_adds(ms_col, "}");
    cm_buf_adds(seq_col, "}");
}

/* The entry the persist batches start after: persist_mark, or now in
 * milliseconds when that is later (queue ids are times). */
static int first_entry(PGconn *pg, uint64_t *ms, uint64_t *seq)
{
    PGresult *r = PQexec(pg, "SELECT ms, seq FROM persist_mark WHERE id = 1");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        fprintf(stderr, "pg_ceiling: no persist_mark: %s", PQerrorMessage(pg));
        PQclear(r);
        return -1;
    }
    uint64_t mark_ms = strtoull(PQgetvalue(r, 0, 0), NULL, 10), mark_seq = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t wall = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    *ms = wall > mark_ms ? wall : mark_ms;
    *seq = wall > mark_ms ? 0 : mark_seq + 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s CONNINFO group|persist ROWS SECONDS AGENTS PREFIX\n", argv[0]);
        return 2;
    }
    const int persist = strcmp(argv[2], "persist") == 0;
    long rows = strtol(argv[3], NULL, 10);
    double seconds = strtod(argv[4], NULL);
    long agents = strtol(argv[5], NULL, 10);
    const char *prefix = argv[6];
    if ((!persist && strcmp(argv[2], "group") != 0) || rows < 1 || seconds <= 0 || agents < 1) {
        fprintf(stderr, "pg_ceiling: bad arguments\n");
        return 2;
    }
    const char *sql = persist ? cm_hbrow_persist_sql : cm_hbrow_group_sql;
    const int nparams = persist ? CM_HBROW_PERSIST_PARAMS : CM_HBROW_PARAMS;
    PGconn *pg = PQconnectdb(argv[1]);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "pg_ceiling: %s", PQerrorMessage(pg));
        return 1;
    }
    uint64_t entry_ms = 0, entry_seq = 0;
    if (persist && first_entry(pg, &entry_ms, &entry_seq) != 0) return 1;
    char *explain = NULL;
    if (getenv("PG_CEILING_EXPLAIN")) {
        explain = malloc(strlen(sql) + 64);
        if (!explain) return 1;
        snprintf(explain, strlen(sql) + 64, "EXPLAIN (ANALYZE, BUFFERS) %s", sql);
    }
    PGresult *prep = PQprepare(pg, "store", sql, nparams, NULL);
    if (PQresultStatus(prep) != PGRES_COMMAND_OK) {
        fprintf(stderr, "pg_ceiling: %s", PQerrorMessage(pg));
        return 1;
    }
    PQclear(prep);
    cm_hb *hb = calloc((size_t)rows, sizeof *hb);
    const cm_hb **hbs = malloc((size_t)rows * sizeof *hbs);
    if (!hb || !hbs) return 1;
    for (long i = 0; i < rows; i++) {
        hb[i].cost_nanos = 3000000; /* cost_usd 0.003, as bench/load.lua sends */
        hb[i].tokens_in = 2100;
        hb[i].tokens_out = 850;
        hb[i].llm_calls = 4;
        hbs[i] = &hb[i];
    }
    long seq = 0, total = 0, statements = 0;
    double t0 = now_s(), t = t0;
    for (int last = 0; !last;) {
        last = t - t0 >= seconds;
        if (last && !explain) break;
        time_t now = time(NULL);
        for (long i = 0; i < rows; i++, seq++) {
            long a = (long)(rand() % agents); /* as bench/load.lua picks them */
            snprintf(hb[i].agent, sizeof hb[i].agent, "agent://default/%s/a%ld", prefix, a);
            snprintf(hb[i].id, sizeof hb[i].id, "%s-%ld-%ld", prefix, (long)t0, seq);
            snprintf(hb[i].intent_id, sizeof hb[i].intent_id, "int_a%ld", a);
            hb[i].ts = now;
        }
        cm_buf cols[CM_HBROW_COLS], entries[2];
        const char *params[MAX_PARAMS];
        char scalar[2][24];
        if (cm_hbrow_columns(hbs, NULL, (size_t)rows, cols) != CM_OK) {
            fprintf(stderr, "pg_ceiling: cannot make the columns\n");
            return 1;
        }
        for (int c = 0; c < CM_HBROW_COLS; c++) params[cm_hbrow_param(c)] = cols[c].data;
        params[CM_HBROW_FIRST_LATE + 1] = "{}";
        if (persist) {
            add_entries(&entries[0], &entries[1], entry_ms, &entry_seq, rows);
            if (entries[0].failed || entries[1].failed) return 1;
            snprintf(scalar[0], sizeof scalar[0], "%" PRIu64, entry_ms);
            snprintf(scalar[1], sizeof scalar[1], "%" PRIu64, entry_seq - 1);
            params[CM_HBROW_FIRST_LATE] = scalar[0]; /* $21, $33..$38 as persist.c sends them */
            params[32] = entries[0].data;
            params[33] = entries[1].data;
            params[34] = scalar[1];
            params[35] = "{}";
            params[36] = "{}";
            params[37] = "false"; /* no rebuild: the steady state's statement */
        } else {
            snprintf(scalar[0], sizeof scalar[0], "%lld", (long long)now);
            params[CM_HBROW_FIRST_LATE] = scalar[0];
        }
        PGresult *res = last ? PQexecParams(pg, explain, nparams, NULL, params, NULL, NULL, 0)
                             : PQexecPrepared(pg, "store", nparams, params, NULL, NULL, 0);
        for (int c = 0; c < CM_HBROW_COLS; c++) cm_buf_free(&cols[c]);
        if (persist) {
            cm_buf_free(&entries[0]);
            cm_buf_free(&entries[1]);
        }
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            fprintf(stderr, "pg_ceiling: %s", PQerrorMessage(pg));
            PQclear(res);
            PQfinish(pg);
            return 1;
        }
        if (last) {
            for (int r = 0; r < PQntuples(res); r++) printf("%s\n", PQgetvalue(res, r, 0));
            PQclear(res);
            break;
        }
        PQclear(res);
        total += rows;
        statements++;
        t = now_s();
    }
    double el = t - t0;
    printf("rows=%ld statements=%ld seconds=%.2f rows_per_s=%.0f ms_per_statement=%.2f\n", total, statements, el,
           (double)total / el, el * 1000.0 / (double)statements);
    PQfinish(pg);
    free(hb);
    free(hbs);
    free(explain);
    return 0;
}
