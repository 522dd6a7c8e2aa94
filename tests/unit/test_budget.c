/* The scopes of budgets: which an intent counts in, their tags in Redis
 * (and back), their names, and the details of their events. */
#include "unit.h"

#include "budget.h"
#include "error.h"
#include "policy.h"

static void scopes_of_an_intent(void)
{
    cm_scope s[CM_SCOPE_KINDS];
    int n = cm_budget_scopes("agent://acme/prod/bot", "r1", "w1", "c1", s);
    CHECK_EQ_I64(n, 6);
    static const cm_scope_kind order[] = {CM_SCOPE_AGENT,    CM_SCOPE_RUN, CM_SCOPE_WORKFLOW,
                                          CM_SCOPE_CUSTOMER, CM_SCOPE_ENV, CM_SCOPE_ORG};
    static const char *const ids[] = {"agent://acme/prod/bot", "r1", "w1", "c1", "prod", ""};
    for (int i = 0; i < n; i++) {
        CHECK_EQ_I64(s[i].kind, order[i]);
        CHECK_STR(s[i].id, ids[i]);
    }
    /* Nothing named: the agent, its environment and its org. */
    n = cm_budget_scopes("agent://acme/prod/bot", "", "", "", s);
    CHECK_EQ_I64(n, 3);
    CHECK_EQ_I64(s[1].kind, CM_SCOPE_ENV);
    CHECK_EQ_I64(s[2].kind, CM_SCOPE_ORG);
}

static void tags(void)
{
    char tag[CM_ADDR_MAX], org[CM_ADDR_SEG_MAX + 1];
    cm_scope s = {CM_SCOPE_AGENT, "agent://acme/prod/bot"}, back;
    cm_budget_tag("acme", &s, tag);
    CHECK_STR(tag, "agent://acme/prod/bot"); /* the agent keys of before */
    CHECK(cm_budget_untag(tag, org, &back) == CM_EINVAL);
    s = (cm_scope){CM_SCOPE_WORKFLOW, "wf:with:colons"};
    cm_budget_tag("acme", &s, tag);
    CHECK_STR(tag, "s:acme:workflow:wf:with:colons");
    CHECK(cm_budget_untag(tag, org, &back) == CM_OK);
    CHECK_STR(org, "acme");
    CHECK_EQ_I64(back.kind, CM_SCOPE_WORKFLOW);
    CHECK_STR(back.id, "wf:with:colons");
    s = (cm_scope){CM_SCOPE_ORG, ""};
    cm_budget_tag("acme", &s, tag);
    CHECK_STR(tag, "s:acme:org:");
    CHECK(cm_budget_untag(tag, org, &back) == CM_OK && back.kind == CM_SCOPE_ORG && back.id[0] == '\0');
    CHECK(cm_budget_untag("s:acme:team:x", org, &back) == CM_EINVAL);
    CHECK(cm_budget_untag("s:acme:agent:x", org, &back) == CM_EINVAL);
    CHECK(cm_budget_untag("s:acme", org, &back) == CM_EINVAL);
    /* The longest tag fits: an org of 64 and an id of 128 bytes. */
    char longid[129];
    memset(longid, 'x', 128);
    longid[128] = '\0';
    char longorg[65];
    memset(longorg, 'o', 64);
    longorg[64] = '\0';
    s = (cm_scope){CM_SCOPE_CUSTOMER, ""};
    memcpy(s.id, longid, sizeof longid);
    cm_budget_tag(longorg, &s, tag);
    CHECK(cm_budget_untag(tag, org, &back) == CM_OK);
    CHECK_STR(back.id, longid);
    CHECK_STR(org, longorg);
}

static void names_and_json(void)
{
    cm_scope_kind k;
    for (int i = 0; i < CM_SCOPE_KINDS; i++) {
        CHECK(cm_scope_parse(cm_scope_name((cm_scope_kind)i), &k) == CM_OK);
        CHECK_EQ_I64(k, i);
    }
    CHECK(cm_scope_parse("team", &k) == CM_EINVAL);
    CHECK_STR(cm_scope_name(CM_SCOPE_KINDS), "unknown");
    cm_buf b;
    cm_buf_init(&b);
    cm_scope s = {CM_SCOPE_CUSTOMER, "a\"b"};
    cm_budget_mark_json(&s, CM_LIM_COST_DAY, 2500000000LL, 3000000000LL, 500000000, &b);
    CHECK_STR(b.data, "{\"scope\":\"customer\",\"scope_id\":\"a\\\"b\",\"limit\":\"max_cost_per_day_usd\","
                      "\"limit_value\":2.5,\"current\":3,\"threshold\":0.5}");
    cm_buf_free(&b);
    cm_buf_init(&b);
    s = (cm_scope){CM_SCOPE_ORG, ""};
    cm_budget_mark_json(&s, CM_LIM_INTENTS_HOUR, 1, 1, 0, &b);
    CHECK_STR(b.data, "{\"scope\":\"org\",\"scope_id\":null,\"limit\":\"max_intents_per_hour\",\"limit_value\":1,"
                      "\"current\":1}");
    cm_buf_free(&b);
    cm_buf_init(&b);
    s = (cm_scope){CM_SCOPE_AGENT, "agent://a/b/c"};
    cm_budget_mark_json(&s, CM_LIM_INTENTS_HOUR, 1, 1, 0, &b);
    CHECK_STR(b.data, "{\"limit\":\"max_intents_per_hour\",\"limit_value\":1,\"current\":1}");
    cm_buf_free(&b);
}

void test_budget(void)
{
    scopes_of_an_intent();
    tags();
    names_and_json();
}
