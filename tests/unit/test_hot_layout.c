/* What costmesh keeps in Redis: key names, window lifetimes, the policy
 * hash fields and a remembered answer's text. The Lua scripts read these
 * names, so a change here that breaks them shows first here. */
#include "unit.h"

#include <stdlib.h>

#include "hot_layout.h"

static void keys(void)
{
    char k[CM_HOT_KEY_MAX];
    cm_hot_key_window("agent://acme/prod/bot", 'd', 1700006400, k);
    CHECK_STR(k, "cm:agent://acme/prod/bot:d:1700006400");
    cm_hot_key_policy("agent://acme/prod/bot", k);
    CHECK_STR(k, "cm:p:agent://acme/prod/bot");
    cm_hot_key_idem("agent://acme/prod/bot", "req-1", false, k);
    CHECK_STR(k, "cm:i:agent://acme/prod/bot:req-1");
    cm_hot_key_idem("agent://acme/prod/bot", "req-1", true, k);
    CHECK_STR(k, "cm:n:agent://acme/prod/bot:req-1");
    cm_hot_key_rebuilt("agent://acme/prod/bot", k);
    CHECK_STR(k, "cm:r:agent://acme/prod/bot");
    /* A scope's keys are its tag's (budget.h), distinct from every agent's. */
    cm_hot_key_window("s:acme:customer:c:1", 'h', 1700006400, k);
    CHECK_STR(k, "cm:s:acme:customer:c:1:h:1700006400");
    cm_hot_key_reserved("s:acme:org:", k);
    CHECK_STR(k, "cm:v:s:acme:org:");
    cm_hot_key_reserved("agent://acme/prod/bot", k);
    CHECK_STR(k, "cm:v:agent://acme/prod/bot");
    cm_hot_key_reservation("acme", "int_1", k);
    CHECK_STR(k, "cm:rv:acme:int_1");
    CHECK_STR(CM_HOT_RESERVATIONS_KEY, "cm:rz");
    CHECK_STR(CM_HOT_EPOCH_KEY, "cm:epoch");
    CHECK_EQ_I64(strlen(CM_HOT_GRAINS), CM_WIN3);
    CHECK_EQ_I64(CM_HOT_GRAINS[CM_WIN3_DAY], 'd');

    /* The longest names fit whole. */
    char address[CM_ADDR_MAX], idem[129];
    memset(address, 'a', sizeof address - 1);
    address[sizeof address - 1] = '\0';
    memset(idem, 'i', sizeof idem - 1);
    idem[sizeof idem - 1] = '\0';
    cm_hot_key_window(address, 'm', INT64_MIN, k);
    CHECK_EQ_I64(strlen(k), 3 + strlen(address) + 3 + 20);
    cm_hot_key_idem(address, idem, false, k);
    CHECK_EQ_I64(strlen(k), 5 + strlen(address) + 1 + strlen(idem));
    /* Longer than any address, as snprintf would cut it, at every length
     * around the edge. */
    char longer[CM_HOT_KEY_MAX + 8], want[CM_HOT_KEY_MAX];
    for (size_t len = CM_HOT_KEY_MAX - 30; len < sizeof longer; len++) {
        memset(longer, 'b', len);
        longer[len] = '\0';
        cm_hot_key_window(longer, 'h', -1234567, k);
        snprintf(want, sizeof want, "cm:%s:%c:%lld", longer, 'h', -1234567LL);
        CHECK_STR(k, want);
    }
}

static void lifetimes(void)
{
    /* A window hash outlives the week and month sums that read it. */
    CHECK(cm_hot_window_ttl('h') >= 2 * 86400);
    CHECK(cm_hot_window_ttl('d') >= 31 * 86400);
    CHECK(cm_hot_window_ttl('m') >= 366 * 86400);
    /* A once-per-window marker outlives the longest window. */
    CHECK(CM_HOT_MARKER_TTL > 31 * 86400);
}

static void policy_fields(void)
{
    cm_policy p;
    cm_policy_init(&p);
    p.has[CM_LIM_COST_DAY] = true;
    p.limit[CM_LIM_COST_DAY] = 10;
    p.has[CM_LIM_INTENTS_HOUR] = true;
    p.limit[CM_LIM_INTENTS_HOUR] = 3;
    p.block = false;
    char space[CM_HOT_POLICY_SPACE];
    const char *argv[CM_HOT_POLICY_ARGV_MAX];
    int argc = cm_hot_policy_fields(&p, space, argv);
    /* n, l0 3, l3 10, t3 amounts, block 0, tf fractions, then deletes. */
    CHECK_STR(argv[0], "5");
    CHECK_STR(argv[1], "l0");
    CHECK_STR(argv[2], "3");
    CHECK_STR(argv[3], "l3");
    CHECK_STR(argv[4], "10");
    CHECK_STR(argv[5], "t3");
    CHECK_STR(argv[6], "5,8,9,10");
    CHECK_STR(argv[7], "block");
    CHECK_STR(argv[8], "0");
    CHECK_STR(argv[9], "tf");
    CHECK_STR(argv[10], "500000000,750000000,900000000,1000000000");
    CHECK_EQ_I64(argc, 11 + 5); /* deletes l1, l2, t2, l4, t4 */
    int found_l4 = 0, found_t2 = 0;
    for (int i = 11; i < argc; i++) {
        found_l4 |= strcmp(argv[i], "l4") == 0;
        found_t2 |= strcmp(argv[i], "t2") == 0;
    }
    CHECK(found_l4);
    CHECK(found_t2);

    /* Every limit set, the most thresholds: it still fits. */
    for (int i = 0; i < CM_LIM_COUNT; i++) {
        p.has[i] = true;
        p.limit[i] = INT64_MAX;
    }
    p.nthresh = CM_THRESH_MAX;
    for (int i = 0; i < CM_THRESH_MAX; i++) p.thresh[i] = CM_FRACTION_ONE - (CM_THRESH_MAX - 1 - i);
    argc = cm_hot_policy_fields(&p, space, argv);
    /* Five limits, three threshold lists, block and tf; nothing to delete. */
    CHECK_STR(argv[0], "10");
    CHECK_EQ_I64(argc, 1 + 2 * 10);
    CHECK_STR(argv[7], "t2");
    CHECK_EQ_I64(strlen(argv[8]), CM_THRESH_MAX * 19 + CM_THRESH_MAX - 1);
}

static void answers(void)
{
    cm_buf b;
    cm_buf_init(&b);
    cm_hot_answer_text(429, 120, "{\"error\":{\"code\":\"x y\"}}", &b);
    char *text = cm_buf_take(&b, NULL);
    CHECK_STR(text, "429 120 {\"error\":{\"code\":\"x y\"}}");
    int status;
    long retry;
    const char *body;
    cm_hot_answer_parse(text, &status, &retry, &body);
    CHECK_EQ_I64(status, 429);
    CHECK_EQ_I64(retry, 120);
    CHECK_STR(body, "{\"error\":{\"code\":\"x y\"}}");
    free(text);

    cm_hot_answer_parse("201 0 ", &status, &retry, &body);
    CHECK_EQ_I64(status, 201);
    CHECK_EQ_I64(retry, 0);
    CHECK_STR(body, "");
}

void test_hot_layout(void)
{
    keys();
    lifetimes();
    policy_fields();
    answers();
}
