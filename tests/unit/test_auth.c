/* test_auth.c - the heartbeat dedupe key hashed in costmeshd is the key
 * PostgreSQL's cm_hb_key (schema/012_partitions.sql) makes of the same pair:
 * both sides must agree, or a retry sent through an older release (which
 * hashed in SQL) would count twice. The expected values are what
 * `SELECT encode(cm_hb_key(address, id), 'hex')` answers. */
#include "unit.h"

#include "auth.h"
#include "error.h"

void test_auth(void)
{
    char key[CM_HB_KEY_HEX_LEN];
    CHECK(cm_auth_hb_key("agent://acme/prod/bot", "hb-1", key) == CM_OK);
    CHECK_STR(key, "3063921a2a74e2d30369c52755b6e847");
    /* An id with UTF-8, a quote and a backslash: hashed as its bytes. */
    CHECK(cm_auth_hb_key("agent://o/e/n", "\xc3\xa9\"\\x", key) == CM_OK);
    CHECK_STR(key, "24a59f561037e497af3e32f1c3e99ae7");
    /* The address's length keeps ("a/b", "c") apart from ("a/bc", ""). */
    char other[CM_HB_KEY_HEX_LEN];
    CHECK(cm_auth_hb_key("agent://o/e/nn", "", other) == CM_OK);
    CHECK(cm_auth_hb_key("agent://o/e/n", "n", key) == CM_OK);
    CHECK(strcmp(key, other) != 0);
}
