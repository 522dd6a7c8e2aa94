/* test_keycache.c - the API key cache: hits, remembered unknown keys,
 * expiry, forgetting a revoked key, and the permission checks built on the
 * identity it hands out. */
#include "api.h"
#include "error.h"
#include "keycache.h"
#include "unit.h"

static void fill_hash(unsigned char h[CM_KEY_HASH_LEN], unsigned char seed)
{
    for (int i = 0; i < CM_KEY_HASH_LEN; i++) h[i] = (unsigned char)(seed + i);
}

static void test_cache(void)
{
    cm_keycache *c;
    CHECK(cm_keycache_new(1000, &c) == CM_OK);
    unsigned char a[CM_KEY_HASH_LEN], b[CM_KEY_HASH_LEN], same_slot[CM_KEY_HASH_LEN];
    fill_hash(a, 1);
    fill_hash(b, 2);
    memcpy(same_slot, a, sizeof same_slot);
    same_slot[31] ^= 0xff; /* same first bytes, so the same slot: must not match */
    cm_ident who = {"key_abc", "acme", true, "", ""}, got;
    CHECK(cm_keycache_get(c, a, 0, &got) == CM_KEYCACHE_MISS);
    cm_keycache_put(c, a, 100, &who);
    CHECK(cm_keycache_get(c, a, 500, &got) == CM_KEYCACHE_FOUND);
    CHECK_STR(got.id, "key_abc");
    CHECK_STR(got.org, "acme");
    CHECK(got.admin);
    CHECK(cm_keycache_get(c, same_slot, 500, &got) == CM_KEYCACHE_MISS);
    memset(&got, 0, sizeof got);
    CHECK(cm_keycache_get(c, a, 1100, &got) == CM_KEYCACHE_AGED); /* expired at 100 + 1000: ask again */
    CHECK_STR(got.id, "key_abc");
    /* Expired, yet still what its last lookup said, for when PostgreSQL
     * cannot be asked; never another key's, never "no such key". */
    memset(&got, 0, sizeof got);
    CHECK(cm_keycache_get(c, a, 1000000, &got) == CM_KEYCACHE_AGED);
    CHECK_STR(got.id, "key_abc");
    CHECK(cm_keycache_get(c, same_slot, 1000000, &got) == CM_KEYCACHE_MISS);
    cm_keycache_put(c, b, 0, NULL);
    CHECK(cm_keycache_get(c, b, 1000000, &got) == CM_KEYCACHE_MISS);
    CHECK(cm_keycache_get(c, b, 10, &got) == CM_KEYCACHE_UNKNOWN);
    cm_keycache_put(c, a, 2000, &who);
    cm_keycache_forget(c, "key_other");
    CHECK(cm_keycache_get(c, a, 2001, &got) == CM_KEYCACHE_FOUND);
    uint64_t g = cm_keycache_generation(c);
    cm_keycache_forget(c, "key_abc");
    CHECK(cm_keycache_get(c, a, 2001, &got) == CM_KEYCACHE_MISS);
    CHECK(cm_keycache_get(c, a, 1000000, &got) == CM_KEYCACHE_MISS); /* revoked: not even aged */
    CHECK(cm_keycache_generation(c) != g); /* a lookup begun before must not put */
    cm_keycache_put(c, a, 3000, &who);
    cm_keycache_put(c, b, 3000, NULL);
    g = cm_keycache_generation(c);
    cm_keycache_clear(c);
    CHECK(cm_keycache_get(c, a, 3001, &got) == CM_KEYCACHE_MISS);
    CHECK(cm_keycache_get(c, b, 3001, &got) == CM_KEYCACHE_MISS);
    CHECK(cm_keycache_generation(c) != g);
    cm_keycache_free(c);

    CHECK(cm_keycache_new(0, &c) == CM_OK); /* ttl 0: nothing is remembered */
    cm_keycache_put(c, a, 0, &who);
    CHECK(cm_keycache_get(c, a, 0, &got) == CM_KEYCACHE_MISS);
    cm_keycache_free(c);
}

static void test_permissions(void)
{
    cm_ident admin = {"key_1", "acme", true, "", ""};
    cm_ident bound = {"key_2", "acme", false, "agent://acme/prod/bot", ""};
    cm_apierr e;
    CHECK(cm_api_may_act_for(&admin, "agent://acme/prod/bot", "agent", &e) == CM_OK);
    CHECK(cm_api_may_act_for(&admin, "agent://globex/prod/bot", "agent", &e) != CM_OK);
    CHECK_EQ_I64(e.status, 403);
    CHECK_STR(e.code, "forbidden_org");
    CHECK_STR(e.field, "agent");
    CHECK(cm_api_may_act_for(&admin, "not-an-address", "agent", &e) != CM_OK);
    CHECK_EQ_I64(e.status, 400);
    CHECK(cm_api_may_act_for(&bound, "agent://acme/prod/other", "agent", &e) != CM_OK);
    CHECK_STR(e.code, "forbidden_agent");
    CHECK(cm_api_need_admin(&bound, &e) != CM_OK);
    CHECK_EQ_I64(e.status, 403);
    CHECK(cm_api_need_admin(&admin, &e) == CM_OK);

    char agent[CM_ADDR_MAX] = "";
    CHECK(cm_api_resolve_agent(&bound, agent, "agent", &e) == CM_OK);
    CHECK_STR(agent, "agent://acme/prod/bot");
    agent[0] = '\0';
    CHECK(cm_api_resolve_agent(&admin, agent, "agent", &e) != CM_OK);
    CHECK_EQ_I64(e.status, 400);
    CHECK_STR(e.field, "agent");
}

void test_keycache(void)
{
    test_cache();
    test_permissions();
}
