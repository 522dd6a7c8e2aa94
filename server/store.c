#include "store.h"
#include "error.h"
#include "hot_layout.h"
#include "log.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Field values compare as decimal strings: Lua numbers are doubles and
 * would round nano-dollar totals above 2^53. */
static const char merge_lua[] =
    "local function gt(a, b)\n"
    "  if #a ~= #b then return #a > #b end\n"
    "  return a > b\n"
    "end\n"
    "local pos = 1\n"
    "for i = 2, #KEYS do\n"
    "  local k = KEYS[i]\n"
    "  local ttl = ARGV[pos]\n"
    "  local nf = tonumber(ARGV[pos + 1])\n"
    "  pos = pos + 2\n"
    "  local fields = {}\n"
    "  for j = 1, nf do fields[j] = ARGV[pos + 2 * (j - 1)] end\n"
    "  local cur = redis.call('HMGET', k, unpack(fields))\n"
    "  local set = {}\n"
    "  for j = 1, nf do\n"
    "    local v = ARGV[pos + 2 * (j - 1) + 1]\n"
    "    if not cur[j] or gt(v, cur[j]) then\n"
    "      set[#set + 1] = fields[j]\n"
    "      set[#set + 1] = v\n"
    "    end\n"
    "  end\n"
    "  pos = pos + 2 * nf\n"
    "  if #set > 0 then redis.call('HSET', k, unpack(set)) end\n"
    "  redis.call('EXPIRE', k, ttl)\n"
    "end\n"
    "return redis.call('EXISTS', KEYS[1])\n";

/* KEYS: 1 epoch, 2 policy hash, 3..5 hour/day/month window hashes,
 * 6 idempotency key. ARGV: 1 "1" when an Idempotency-Key is used, 2..4 the
 * windows' ttls, 5 the address, 6..8 the windows' start times (for the
 * once-per-window breach markers). Answers {code, breached mask, newly
 * breached mask, current of each limit (5), limit values (5)} where code is
 * 1 admitted, 0 refused, 2 killed; or {-1} when Redis lost its data, {-2,
 * stored answer} for a repeated key, {-3} while the first is in flight. */
static const char admit_lua[] =
    "local function ge(a, b)\n"
    "  if #a ~= #b then return #a > #b end\n"
    "  return a >= b\n"
    "end\n"
    "if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end\n"
    "if ARGV[1] == '1' then\n"
    "  local prev = redis.call('GET', KEYS[6])\n"
    "  if prev == 'pending' then return {-3} end\n"
    "  if prev then return {-2, prev} end\n"
    "end\n"
    "local p = redis.call('HMGET', KEYS[2], 'killed', 'block', 'l0', 'l1', 'l2', 'l3', 'l4')\n"
    "local cur = {\n"
    "  redis.call('HGET', KEYS[3], 'intents') or '0', redis.call('HGET', KEYS[4], 'intents') or '0',\n"
    "  redis.call('HGET', KEYS[3], 'cost') or '0', redis.call('HGET', KEYS[4], 'cost') or '0',\n"
    "  redis.call('HGET', KEYS[5], 'cost') or '0'}\n"
    "local win = {ARGV[6], ARGV[7], ARGV[6], ARGV[7], ARGV[8]}\n"
    "local code, mask, fresh = 1, 0, 0\n"
    "if p[1] == '1' then code = 2 else\n"
    "  for i = 1, 5 do\n"
    "    local lim = p[2 + i]\n"
    "    if lim and ge(cur[i], lim) then\n"
    "      mask = mask + 2 ^ (i - 1)\n"
    "      if redis.call('SET', 'cm:x:' .. ARGV[5] .. ':b' .. (i - 1) .. ':' .. win[i], '1', 'NX', 'EX', 3000000) then\n"
    "        fresh = fresh + 2 ^ (i - 1)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  if mask > 0 and p[2] ~= '0' then code = 0 else\n"
    "    for k = 3, 5 do\n"
    "      redis.call('HINCRBY', KEYS[k], 'intents', 1)\n"
    "      redis.call('EXPIRE', KEYS[k], ARGV[k - 1])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if ARGV[1] == '1' then redis.call('SET', KEYS[6], 'pending', 'EX', 86400) end\n"
    "return {code, mask, fresh, cur[1], cur[2], cur[3], cur[4], cur[5],\n"
    "  p[3] or '', p[4] or '', p[5] or '', p[6] or '', p[7] or ''}\n";

/* KEYS: 1 epoch, then per agent its policy hash and hour/day/month window
 * hashes. ARGV per agent: address and the three windows' start times.
 * Answers one state per agent (0 active, 1 blocked, 2 killed), then for
 * each newly crossed mark five values: agent index, limit index, the
 * threshold's fraction in 1e-9 units (0 for the limit itself), current
 * cost, limit. */
static const char check_lua[] =
    "local function ge(a, b)\n"
    "  if #a ~= #b then return #a > #b end\n"
    "  return a >= b\n"
    "end\n"
    "local n = (#KEYS - 1) / 4\n"
    "local out, marks = {}, {}\n"
    "for a = 0, n - 1 do\n"
    "  local base = 2 + 4 * a\n"
    "  local addr = ARGV[1 + 4 * a]\n"
    "  local p = redis.call('HMGET', KEYS[base], 'killed', 'block', 'l0', 'l1', 'l2', 'l3', 'l4', 't2', 't3', 't4', 'tf')\n"
    "  local fr = {}\n"
    "  for f in string.gmatch(p[11] or '', '[^,]+') do fr[#fr + 1] = f end\n"
    "  local cur = {\n"
    "    redis.call('HGET', KEYS[base + 1], 'intents') or '0', redis.call('HGET', KEYS[base + 2], 'intents') or '0',\n"
    "    redis.call('HGET', KEYS[base + 1], 'cost') or '0', redis.call('HGET', KEYS[base + 2], 'cost') or '0',\n"
    "    redis.call('HGET', KEYS[base + 3], 'cost') or '0'}\n"
    "  local win = {ARGV[2 + 4 * a], ARGV[3 + 4 * a], ARGV[2 + 4 * a], ARGV[3 + 4 * a], ARGV[4 + 4 * a]}\n"
    "  local state = 0\n"
    "  for i = 1, 5 do\n"
    "    local lim = p[2 + i]\n"
    "    if lim and ge(cur[i], lim) and p[2] ~= '0' then state = 1 end\n"
    "  end\n"
    "  if p[1] == '1' then state = 2 end\n"
    "  out[a + 1] = state\n"
    "  for i = 3, 5 do\n"
    "    local lim = p[2 + i]\n"
    "    if lim then\n"
    "      local idx = 0\n"
    "      for amt in string.gmatch(p[5 + i] or '', '[^,]+') do\n"
    "        idx = idx + 1\n"
    "        if ge(cur[i], amt) and redis.call('SET', 'cm:x:' .. addr .. ':t' .. (i - 1) .. ':' .. win[i] .. ':' .. idx, '1', 'NX', 'EX', 3000000) then\n"
    "          marks[#marks + 1] = a; marks[#marks + 1] = i - 1; marks[#marks + 1] = fr[idx] or '0'\n"
    "          marks[#marks + 1] = cur[i]; marks[#marks + 1] = lim\n"
    "        end\n"
    "      end\n"
    "      if ge(cur[i], lim) and redis.call('SET', 'cm:x:' .. addr .. ':b' .. (i - 1) .. ':' .. win[i], '1', 'NX', 'EX', 3000000) then\n"
    "        marks[#marks + 1] = a; marks[#marks + 1] = i - 1; marks[#marks + 1] = 0\n"
    "        marks[#marks + 1] = cur[i]; marks[#marks + 1] = lim\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "for i = 1, #marks do out[#out + 1] = marks[i] end\n"
    "return out\n";

/* KEYS[1] the hash. ARGV: 1 the number n of field/value pairs to set, then
 * the pairs, then the fields to delete. */
static const char hreplace_lua[] =
    "local n = tonumber(ARGV[1])\n"
    "for i = 1, n do redis.call('HSET', KEYS[1], ARGV[2 * i], ARGV[2 * i + 1]) end\n"
    "for i = 2 + 2 * n, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end\n"
    "return n\n";

static const char *const scripts[CM_SCRIPT_COUNT] = {merge_lua, admit_lua, check_lua, hreplace_lua};

/* A call kept until its reply, so NOSCRIPT can resend it. The command is
 * laid out once: argv[0..3) is "EVALSHA sha nkeys" (or "EVAL body nkeys"
 * on the resend), then the caller's arguments, copied into one block. */
typedef struct call {
    cm_store *s;
    int script;
    int total;          /* 3 + the caller's argc */
    const char **argv;  /* owned array; strings point into bytes or are static */
    size_t *lens;       /* owned */
    char *bytes;        /* owned: the caller's arguments */
    char nkeys[16];
    int retried;        /* re-sent as EVAL after NOSCRIPT */
    cm_store_cb cb;
    void *arg;
} call;

struct cm_store {
    uv_loop_t *loop;
    char host[128];
    int port;
    int db;
    redisAsyncContext *ac; /* NULL while disconnected */
    char sha[CM_SCRIPT_COUNT][41];
    int loaded;            /* scripts whose SHA arrived this connection */
    _Atomic int ready;
    _Atomic size_t backlog;
    uv_timer_t retry;   /* reconnect after backoff, and connect timeout */
    int connected;      /* the current ac finished connecting */
    int backoff_ms;
    int closing;
    cm_store_ready_cb on_ready;
    void *ready_arg;
};

static void start_connect(cm_store *s);
static void schedule_retry(cm_store *s);

static void call_free(call *c)
{
    free(c->argv);
    free(c->lens);
    free(c->bytes);
    free(c);
}

static void on_retry(uv_timer_t *t)
{
    start_connect(t->data);
}

static void on_connect_timeout(uv_timer_t *t)
{
    cm_store *s = t->data;
    redisAsyncContext *ac = s->ac;
    if (!ac || s->connected) return;
    s->ac = NULL; /* callbacks of this context are ignored from now on */
    redisAsyncFree(ac);
    cm_log(CM_LOG_WARN, "event=redis_connect_failed reason=timeout");
    schedule_retry(s);
}

static void schedule_retry(cm_store *s)
{
    if (s->closing) return;
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : 100;
    if (s->backoff_ms > 5000) s->backoff_ms = 5000;
    uv_timer_start(&s->retry, on_retry, (uint64_t)s->backoff_ms, 0);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    cm_store *s = ac->data;
    (void)status;
    if (ac != s->ac) return; /* a context we already gave up on */
    s->ac = NULL;
    atomic_store(&s->ready, 0);
    cm_log(CM_LOG_WARN, "event=redis_disconnected");
    schedule_retry(s);
}

static void on_loaded(redisAsyncContext *ac, void *r, void *priv)
{
    cm_store *s = ac->data;
    redisReply *reply = r;
    int i = (int)(intptr_t)priv;
    if (!reply || reply->type != REDIS_REPLY_STRING || reply->len != 40) {
        cm_log(CM_LOG_ERROR, "event=redis_script_load_failed script=%d", i);
        return;
    }
    memcpy(s->sha[i], reply->str, 40);
    s->sha[i][40] = '\0';
    if (++s->loaded == CM_SCRIPT_COUNT) {
        atomic_store(&s->ready, 1);
        s->backoff_ms = 0;
        cm_log(CM_LOG_INFO, "event=redis_ready");
        if (s->on_ready) s->on_ready(s->ready_arg);
    }
}

static void load_scripts(cm_store *s)
{
    s->loaded = 0;
    for (int i = 0; i < CM_SCRIPT_COUNT; i++)
        redisAsyncCommand(s->ac, on_loaded, (void *)(intptr_t)i, "SCRIPT LOAD %s", scripts[i]);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    cm_store *s = ac->data;
    if (ac != s->ac) return;
    uv_timer_stop(&s->retry);
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        s->ac = NULL;
        cm_log(CM_LOG_WARN, "event=redis_connect_failed");
        schedule_retry(s);
        return;
    }
    s->connected = 1;
    cm_log(CM_LOG_INFO, "event=redis_connected host=%s port=%d", s->host, s->port);
    if (s->db) redisAsyncCommand(s->ac, NULL, NULL, "SELECT %d", s->db);
    load_scripts(s);
}

static void start_connect(cm_store *s)
{
    if (s->closing) return;
    redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
    if (!ac || ac->err) {
        if (ac) redisAsyncFree(ac);
        schedule_retry(s);
        return;
    }
    ac->data = s;
    if (redisLibuvAttach(ac, s->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_retry(s);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    s->ac = ac;
    s->connected = 0;
    /* hiredis 0.14's libuv adapter drops the error of a refused
     * non-blocking connect, so on_connect may never run: give up on the
     * attempt after a second. */
    uv_timer_start(&s->retry, on_connect_timeout, 1000, 0);
}

int cm_store_new(uv_loop_t *loop, const char *host, int port, int db,
                 cm_store_ready_cb on_ready, void *arg, cm_store **out)
{
    cm_store *s = calloc(1, sizeof *s);
    if (!s) return CM_ENOMEM;
    s->loop = loop;
    snprintf(s->host, sizeof s->host, "%s", host);
    s->port = port;
    s->db = db;
    s->on_ready = on_ready;
    s->ready_arg = arg;
    uv_timer_init(loop, &s->retry);
    s->retry.data = s;
    start_connect(s);
    *out = s;
    return CM_OK;
}

static void on_retry_closed(uv_handle_t *h)
{
    free(h->data);
}

void cm_store_free(cm_store *s)
{
    if (!s) return;
    s->closing = 1;
    atomic_store(&s->ready, 0);
    if (s->ac) {
        redisAsyncContext *ac = s->ac;
        s->ac = NULL;
        /* Pending callbacks run with a NULL reply inside this call. */
        redisAsyncFree(ac);
    }
    uv_close((uv_handle_t *)&s->retry, on_retry_closed);
}

bool cm_store_ready(const cm_store *s)
{
    return s && atomic_load(&((cm_store *)s)->ready);
}

size_t cm_store_backlog(const cm_store *s)
{
    return s ? atomic_load(&((cm_store *)s)->backlog) : 0;
}

static int send_call(call *c);

static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    call *c = priv;
    cm_store *s = c->s;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0 &&
        !c->retried && s->ac) {
        /* Redis restarted or flushed its script cache: send the body once
         * and load it again for the next calls. */
        c->retried = 1;
        cm_log(CM_LOG_INFO, "event=redis_noscript script=%d", c->script);
        load_scripts(s);
        if (send_call(c) == CM_OK) return;
    }
    atomic_fetch_sub(&s->backlog, 1);
    int rc = CM_OK;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply) cm_log(CM_LOG_WARN, "event=redis_error script=%d message=\"%.120s\"", c->script, reply->str);
        rc = CM_ESTORE;
    }
    c->cb(c->arg, rc, rc == CM_OK ? (const cm_store_reply *)reply : NULL);
    call_free(c);
}

static const redisReply *element(const cm_store_reply *r, int i)
{
    const redisReply *x = (const redisReply *)r;
    if (!x) return NULL;
    if (x->type != REDIS_REPLY_ARRAY) return i == 0 ? x : NULL;
    return i >= 0 && (size_t)i < x->elements ? x->element[i] : NULL;
}

int cm_store_reply_len(const cm_store_reply *r)
{
    const redisReply *x = (const redisReply *)r;
    if (!x) return 0;
    return x->type == REDIS_REPLY_ARRAY ? (int)x->elements : 1;
}

long long cm_store_reply_int(const cm_store_reply *r, int i)
{
    const redisReply *e = element(r, i);
    if (!e) return 0;
    if (e->type == REDIS_REPLY_INTEGER) return e->integer;
    if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) return strtoll(e->str, NULL, 10);
    return 0;
}

const char *cm_store_reply_str(const cm_store_reply *r, int i, char *tmp, size_t tmpsz)
{
    const redisReply *e = element(r, i);
    if (!e) return "";
    if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) return e->str;
    if (e->type == REDIS_REPLY_INTEGER) {
        snprintf(tmp, tmpsz, "%lld", e->integer);
        return tmp;
    }
    return "";
}

static int send_call(call *c)
{
    cm_store *s = c->s;
    c->argv[0] = c->retried ? "EVAL" : "EVALSHA";
    c->argv[1] = c->retried ? scripts[c->script] : s->sha[c->script];
    for (int i = 0; i < 3; i++) c->lens[i] = strlen(c->argv[i]);
    return redisAsyncCommandArgv(s->ac, on_reply, c, c->total, c->argv, c->lens) == REDIS_OK ? CM_OK : CM_ESTORE;
}

int cm_store_eval(cm_store *s, int script, int nkeys, int argc, const char *const *argv,
                  const size_t *lens, cm_store_cb cb, void *arg)
{
    if (!s->ac || !atomic_load(&s->ready)) return CM_ESTORE;
    call *c = calloc(1, sizeof *c);
    if (!c) return CM_ENOMEM;
    size_t nbytes = 0;
    for (int i = 0; i < argc; i++) nbytes += lens[i];
    c->s = s;
    c->script = script;
    c->total = argc + 3;
    c->cb = cb;
    c->arg = arg;
    c->argv = malloc((size_t)c->total * sizeof *c->argv);
    c->lens = malloc((size_t)c->total * sizeof *c->lens);
    c->bytes = malloc(nbytes ? nbytes : 1);
    if (!c->argv || !c->lens || !c->bytes) {
        call_free(c);
        return CM_ENOMEM;
    }
    snprintf(c->nkeys, sizeof c->nkeys, "%d", nkeys);
    c->argv[2] = c->nkeys;
    char *p = c->bytes;
    for (int i = 0; i < argc; i++) {
        memcpy(p, argv[i], lens[i]);
        c->argv[3 + i] = p;
        c->lens[3 + i] = lens[i];
        p += lens[i];
    }
    int rc = send_call(c);
    if (rc != CM_OK) {
        call_free(c);
        return rc;
    }
    atomic_fetch_add(&s->backlog, 1);
    return CM_OK;
}

int cm_store_set(cm_store *s, const char *key, const char *value, long ttl_s)
{
    if (!s->ac) return CM_ESTORE;
    int rc = ttl_s > 0 ? redisAsyncCommand(s->ac, NULL, NULL, "SET %s %s EX %ld", key, value, ttl_s)
                       : redisAsyncCommand(s->ac, NULL, NULL, "SET %s %s", key, value);
    return rc == REDIS_OK ? CM_OK : CM_ESTORE;
}

int cm_store_del(cm_store *s, const char *key)
{
    if (!s->ac) return CM_ESTORE;
    return redisAsyncCommand(s->ac, NULL, NULL, "DEL %s", key) == REDIS_OK ? CM_OK : CM_ESTORE;
}

int cm_store_hincrby(cm_store *s, const char *key, const char *field, long long by)
{
    if (!s->ac) return CM_ESTORE;
    return redisAsyncCommand(s->ac, NULL, NULL, "HINCRBY %s %s %lld", key, field, by) == REDIS_OK ? CM_OK
                                                                                                   : CM_ESTORE;
}

int cm_store_ping(const char *host, int port, char *err, size_t errsz)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err) {
        snprintf(err, errsz, "cannot connect to Redis at %s:%d: %s", host, port, c ? c->errstr : "out of memory");
        redisFree(c);
        return CM_ESTORE;
    }
    redisReply *r = redisCommand(c, "PING");
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (!ok) snprintf(err, errsz, "Redis at %s:%d did not answer PING", host, port);
    freeReplyObject(r);
    redisFree(c);
    return ok ? CM_OK : CM_ESTORE;
}

void cm_store_key_window(const char *address, char grain, int64_t start, char out[CM_STORE_KEY_MAX])
{
    snprintf(out, CM_STORE_KEY_MAX, "cm:%s:%c:%lld", address, grain, (long long)start);
}

void cm_store_key_policy(const char *address, char out[CM_STORE_KEY_MAX])
{
    snprintf(out, CM_STORE_KEY_MAX, "cm:p:%s", address);
}

long cm_store_window_ttl(char grain)
{
    return grain == 'h' ? 3 * 86400L : grain == 'd' ? 40 * 86400L : 400 * 86400L;
}

/* Runs HREPLACE on `key` with args (argv[0] must be left free for the key). */
static int hreplace(cm_store *s, char *key, int argc, const char **argv, cm_store_cb cb, void *arg)
{
    size_t lens[CM_HOT_POLICY_ARGV_MAX + 1];
    argv[0] = key;
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    return cm_store_eval(s, CM_SCRIPT_HREPLACE, 1, argc, argv, lens, cb, arg);
}

int cm_store_put_policy(cm_store *s, const char *address, const cm_policy *pol, cm_store_cb cb, void *arg)
{
    char key[CM_STORE_KEY_MAX], space[CM_HOT_POLICY_SPACE];
    const char *argv[CM_HOT_POLICY_ARGV_MAX + 1];
    cm_policy none;
    if (!pol) {
        cm_policy_init(&none);
        pol = &none;
    }
    cm_store_key_policy(address, key);
    return hreplace(s, key, 1 + cm_hot_policy_fields(pol, space, argv + 1), argv, cb, arg);
}

int cm_store_put_killed(cm_store *s, const char *address, bool killed, cm_store_cb cb, void *arg)
{
    char key[CM_STORE_KEY_MAX];
    /* HREPLACE: set one pair, or set none and delete the field. */
    const char *argv[] = {NULL, killed ? "1" : "0", "killed", "1"};
    cm_store_key_policy(address, key);
    return hreplace(s, key, killed ? 4 : 3, argv, cb, arg);
}
