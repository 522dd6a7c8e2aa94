#include "hot_layout.h"
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Three keys a heartbeat, so written without printf ("cm:%s:%c:%lld"),
 * which cost more than the rest of the ACK's arguments; an address too long
 * for out is cut as snprintf would (no address the codec accepts is). */
void cm_hot_key_window(const char *address, char grain, int64_t start, char out[CM_HOT_KEY_MAX])
{
    char num[CM_INT_TEXT_MAX];
    size_t a = strlen(address), n = cm_int_text(start, num);
    if (3 + a + 3 + n >= CM_HOT_KEY_MAX) {
        snprintf(out, CM_HOT_KEY_MAX, "cm:%s:%c:%s", address, grain, num);
        return;
    }
    memcpy(out, "cm:", 3);
    memcpy(out + 3, address, a);
    out[3 + a] = ':';
    out[4 + a] = grain;
    out[5 + a] = ':';
    memcpy(out + 6 + a, num, n + 1);
}

void cm_hot_key_policy(const char *address, char out[CM_HOT_KEY_MAX])
{
    snprintf(out, CM_HOT_KEY_MAX, "cm:p:%s", address);
}

void cm_hot_key_idem(const char *address, const char *key, bool by_intent_id, char out[CM_HOT_KEY_MAX])
{
    snprintf(out, CM_HOT_KEY_MAX, "cm:%c:%s:%s", by_intent_id ? 'n' : 'i', address, key);
}

void cm_hot_key_rebuilt(const char *address, char out[CM_HOT_KEY_MAX])
{
    snprintf(out, CM_HOT_KEY_MAX, "cm:r:%s", address);
}

void cm_hot_key_reserved(const char *tag, char out[CM_HOT_KEY_MAX])
{
    snprintf(out, CM_HOT_KEY_MAX, "cm:v:%s", tag);
}

void cm_hot_key_reservation(const char *org, const char *intent_id, char out[CM_HOT_KEY_MAX])
{
    snprintf(out, CM_HOT_KEY_MAX, "cm:rv:%s:%s", org, intent_id);
}

void cm_hot_key_tree(const char *org, const char *root, char out[CM_HOT_KEY_MAX])
{
    snprintf(out, CM_HOT_KEY_MAX, "cm:t:%s:%s", org, root);
}

void cm_hot_key_dedupe(const char *key_hex, char out[CM_HOT_KEY_MAX])
{
    snprintf(out, CM_HOT_KEY_MAX, "cm:d:%s", key_hex);
}

long cm_hot_window_ttl(char grain)
{
    return grain == 'h' ? 3 * 86400L : grain == 'd' ? 40 * 86400L : 400 * 86400L;
}

int cm_hot_policy_fields(const cm_policy *p, char space[CM_HOT_POLICY_SPACE],
                         const char *argv[CM_HOT_POLICY_ARGV_MAX])
{
    static const char *const fields[CM_LIM_COUNT] = {"l0", "l1", "l2", "l3", "l4"};
    static const char *const tfields[CM_LIM_COUNT] = {NULL, NULL, "t2", "t3", "t4"};
    size_t used = 0;
    int argc = 1, nset = 0;
    const char *dels[2 * CM_LIM_COUNT];
    int ndel = 0;
    for (int i = 0; i < CM_LIM_COUNT; i++) {
        if (!p->has[i]) {
            dels[ndel++] = fields[i];
            if (tfields[i]) dels[ndel++] = tfields[i];
            continue;
        }
        char *v = space + used;
        used += (size_t)snprintf(v, CM_HOT_POLICY_SPACE - used, "%lld", (long long)p->limit[i]) + 1;
        argv[argc++] = fields[i];
        argv[argc++] = v;
        nset++;
        if (!tfields[i]) continue;
        char *t = space + used;
        size_t tl = 0;
        for (int k = 0; k < p->nthresh && used + tl + 24 < CM_HOT_POLICY_SPACE; k++)
            tl += (size_t)snprintf(t + tl, CM_HOT_POLICY_SPACE - used - tl, "%s%lld", k ? "," : "",
                                   (long long)cm_policy_threshold(p->limit[i], p->thresh[k]));
        used += tl + 1;
        argv[argc++] = tfields[i];
        argv[argc++] = t;
        nset++;
    }
    argv[argc++] = "block";
    argv[argc++] = p->block ? "1" : "0";
    nset++;
    char *tf = space + used;
    size_t tl = 0;
    for (int k = 0; k < p->nthresh && used + tl + 24 < CM_HOT_POLICY_SPACE; k++)
        tl += (size_t)snprintf(tf + tl, CM_HOT_POLICY_SPACE - used - tl, "%s%lld", k ? "," : "", (long long)p->thresh[k]);
    used += tl + 1;
    argv[argc++] = "tf";
    argv[argc++] = tf;
    nset++;
    for (int i = 0; i < ndel; i++) argv[argc++] = dels[i];
    char *n = space + used;
    snprintf(n, CM_HOT_POLICY_SPACE - used, "%d", nset);
    argv[0] = n;
    return argc;
}

void cm_hot_answer_text(int status, long retry_after, const char *body, cm_buf *out)
{
    cm_buf_addf(out, "%d %ld ", status, retry_after);
    cm_buf_adds(out, body);
}

void cm_hot_answer_parse(const char *text, int *status, long *retry_after, const char **body)
{
    char *end;
    *status = (int)strtol(text, &end, 10);
    *retry_after = strtol(end, &end, 10);
    if (*end == ' ') end++;
    *body = end;
}
