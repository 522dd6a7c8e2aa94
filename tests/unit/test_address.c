/* test_address.c - agent address validation and percent-decoding. */
#include "unit.h"

#include "address.h"
#include "error.h"

static int aparse(const char *s, cm_addr *a)
{
    return cm_addr_parse(s, strlen(s), a);
}

/* True when span (p, n) holds exactly the C string want. */
static int span_is(const char *p, size_t n, const char *want)
{
    return p != NULL && n == strlen(want) && memcmp(p, want, n) == 0;
}

static void valid(void)
{
    cm_addr a;
    const char *s = "agent://acme/prod/billing-bot";

    memset(&a, 0, sizeof a);
    CHECK_EQ_I64(aparse(s, &a), CM_OK);
    CHECK(span_is(a.org, a.org_len, "acme"));
    CHECK(span_is(a.env, a.env_len, "prod"));
    CHECK(span_is(a.name, a.name_len, "billing-bot"));
    /* Spans borrow the caller's string. */
    CHECK(a.org == s + 8);
    CHECK(a.name == s + 18);

    CHECK_EQ_I64(aparse("agent://a/b/c", &a), CM_OK);
    CHECK(span_is(a.env, a.env_len, "b"));
    CHECK_EQ_I64(aparse("agent://A.B_c-9/x.y/..x", &a), CM_OK);
    CHECK(span_is(a.name, a.name_len, "..x"));
    CHECK_EQ_I64(aparse("agent://.../.a/a.", &a), CM_OK);
    CHECK_EQ_I64(aparse("agent://Org/ENV/Name", NULL), CM_OK);
    CHECK_EQ_I64(aparse("agent://0/1/2", NULL), CM_OK);

    {
        /* Exactly len bytes: what follows is not read. */
        const char *t = "agent://a/b/c/d";
        CHECK_EQ_I64(cm_addr_parse(t, 13, &a), CM_OK);
        CHECK(span_is(a.name, a.name_len, "c"));
        CHECK_EQ_I64(cm_addr_parse(t, 14, &a), CM_EINVAL);
        CHECK_EQ_I64(cm_addr_parse(t, 15, &a), CM_EINVAL);
    }
    {
        char raw[13];
        memcpy(raw, "agent://a/b/c", sizeof raw);
        CHECK_EQ_I64(cm_addr_parse(raw, sizeof raw, &a), CM_OK);
    }
}

static void invalid(void)
{
    static const char *const bad[] = {
        "",
        "agent://",
        "agent:/a/b/c",
        "agent:a/b/c",
        "Agent://a/b/c",             /* uppercase scheme */
        "AGENT://a/b/c",
        "agent:///b/c",              /* empty org */
        "agent://a//c",              /* empty env */
        "agent://a/b/",              /* empty name */
        "agent://a/b",               /* two segments */
        "agent://a",
        "agent://a/b/c/",            /* trailing slash */
        "agent://a/b/c/d",           /* four segments */
        "agent://./b/c",
        "agent://a/../c",
        "agent://a/b/..",
        "agent://a/b/.",
        "agent://a b/c/d",
        "agent://a/b/c ",
        " agent://a/b/c",
        "agent://a/b/c?x=1",
        "agent://a/b/c#f",
        "agent://a%2Fb/c/d",
        "agent://a:1/b/c",
        "agent://a/b@x/c",
        "agent://a/b/caf\xc3\xa9",   /* non-ASCII */
        "agent://a\\b/c/d",
        "http://a/b/c",
        "agentx://a/b/c",
        "agent//a/b/c",
        "a/b/c",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = aparse(bad[i], NULL);

        CHECK_EQ_I64(rc, CM_EINVAL);
        if (rc != CM_EINVAL)
            fprintf(stderr, "  input was \"%s\"\n", bad[i]);
    }
    CHECK_EQ_I64(cm_addr_parse("agent://a/b/c\0", 14, NULL), CM_EINVAL);
    CHECK_EQ_I64(cm_addr_parse("agent://a\0/b/c", 14, NULL), CM_EINVAL);
    CHECK_EQ_I64(cm_addr_parse(NULL, 0, NULL), CM_EINVAL);
    CHECK_EQ_I64(cm_addr_parse("agent://a/b/c", 7, NULL), CM_EINVAL);
}

static void lengths(void)
{
    char seg64[65], seg65[66], buf[512];
    cm_addr a;
    int n;

    memset(seg64, 'x', 64);
    seg64[64] = '\0';
    memset(seg65, 'y', 65);
    seg65[65] = '\0';

    /* Each position accepts 64 and refuses 65. */
    n = snprintf(buf, sizeof buf, "agent://%s/%s/%s", seg64, seg64, seg64);
    CHECK_EQ_I64(cm_addr_parse(buf, (size_t)n, &a), CM_OK);
    CHECK_EQ_I64(a.org_len, 64);
    CHECK_EQ_I64(a.env_len, 64);
    CHECK_EQ_I64(a.name_len, 64);
    n = snprintf(buf, sizeof buf, "agent://%s/b/c", seg65);
    CHECK_EQ_I64(cm_addr_parse(buf, (size_t)n, NULL), CM_EINVAL);
    n = snprintf(buf, sizeof buf, "agent://a/%s/c", seg65);
    CHECK_EQ_I64(cm_addr_parse(buf, (size_t)n, NULL), CM_EINVAL);
    n = snprintf(buf, sizeof buf, "agent://a/b/%s", seg65);
    CHECK_EQ_I64(cm_addr_parse(buf, (size_t)n, NULL), CM_EINVAL);

    CHECK_EQ_I64(cm_addr_check_org(seg64, 64), CM_OK);
    CHECK_EQ_I64(cm_addr_check_org(seg65, 65), CM_EINVAL);
    /* The whole-address cap (NUL included) refuses long input outright. */
    memset(buf, 'a', sizeof buf);
    CHECK_EQ_I64(cm_addr_parse(buf, CM_ADDR_MAX, NULL), CM_EINVAL);
}

static void org(void)
{
    CHECK_EQ_I64(cm_addr_check_org("acme", 4), CM_OK);
    CHECK_EQ_I64(cm_addr_check_org("A-b_c.9", 7), CM_OK);
    CHECK_EQ_I64(cm_addr_check_org("acme/x", 4), CM_OK); /* only 4 bytes read */
    CHECK_EQ_I64(cm_addr_check_org("", 0), CM_EINVAL);
    CHECK_EQ_I64(cm_addr_check_org(".", 1), CM_EINVAL);
    CHECK_EQ_I64(cm_addr_check_org("..", 2), CM_EINVAL);
    CHECK_EQ_I64(cm_addr_check_org("...", 3), CM_OK);
    CHECK_EQ_I64(cm_addr_check_org("a/b", 3), CM_EINVAL);
    CHECK_EQ_I64(cm_addr_check_org("a b", 3), CM_EINVAL);
    CHECK_EQ_I64(cm_addr_check_org("a\0", 2), CM_EINVAL);
    CHECK_EQ_I64(cm_addr_check_org("a%20", 4), CM_EINVAL);
    CHECK_EQ_I64(cm_addr_check_org(NULL, 0), CM_EINVAL);
}

static int dec(const char *in, char *out, size_t outsz, size_t *outlen)
{
    return cm_pct_decode(in, strlen(in), out, outsz, outlen);
}

static void decode(void)
{
    char out[CM_ADDR_MAX];
    size_t n = 999;
    cm_addr a;

    CHECK_EQ_I64(dec("agent%3A%2F%2Facme%2Fprod%2Fbot", out, sizeof out, &n), CM_OK);
    CHECK_STR(out, "agent://acme/prod/bot");
    CHECK_EQ_I64(n, 21);
    CHECK_EQ_I64(cm_addr_parse(out, n, &a), CM_OK);
    CHECK(span_is(a.env, a.env_len, "prod"));
    /* Lowercase hex too. */
    CHECK_EQ_I64(dec("agent%3a%2f%2facme%2fprod%2fbot", out, sizeof out, &n), CM_OK);
    CHECK_STR(out, "agent://acme/prod/bot");
    CHECK_EQ_I64(dec("%41%7e%7E%20", out, sizeof out, &n), CM_OK);
    CHECK_STR(out, "A~~ ");
    CHECK_EQ_I64(dec("%ff", out, sizeof out, &n), CM_OK);
    CHECK(n == 1 && (unsigned char)out[0] == 0xff);
    /* '+' is not a space in a path. */
    CHECK_EQ_I64(dec("a+b", out, sizeof out, &n), CM_OK);
    CHECK_STR(out, "a+b");
    CHECK_EQ_I64(dec("plain", out, sizeof out, &n), CM_OK);
    CHECK_STR(out, "plain");
    CHECK_EQ_I64(n, 5);
    CHECK_EQ_I64(dec("", out, sizeof out, &n), CM_OK);
    CHECK_STR(out, "");
    CHECK_EQ_I64(n, 0);
    /* %25 decodes once, not twice. */
    CHECK_EQ_I64(dec("%252F", out, sizeof out, NULL), CM_OK);
    CHECK_STR(out, "%2F");

    /* Malformed escapes. */
    n = 999;
    CHECK_EQ_I64(dec("%00", out, sizeof out, &n), CM_EINVAL);
    CHECK_EQ_I64(dec("a%00b", out, sizeof out, &n), CM_EINVAL);
    CHECK_EQ_I64(dec("%2", out, sizeof out, &n), CM_EINVAL);
    CHECK_EQ_I64(dec("abc%", out, sizeof out, &n), CM_EINVAL);
    CHECK_EQ_I64(dec("%", out, sizeof out, &n), CM_EINVAL);
    CHECK_EQ_I64(dec("%G0", out, sizeof out, &n), CM_EINVAL);
    CHECK_EQ_I64(dec("%0G", out, sizeof out, &n), CM_EINVAL);
    CHECK_EQ_I64(dec("%-1", out, sizeof out, &n), CM_EINVAL);
    CHECK_EQ_I64(dec("% 1", out, sizeof out, &n), CM_EINVAL);
    CHECK_EQ_I64(dec("%%41", out, sizeof out, &n), CM_EINVAL);
    CHECK_EQ_I64(cm_pct_decode("a\0b", 3, out, sizeof out, &n), CM_EINVAL);
    CHECK_EQ_I64(n, 999); /* untouched on failure */
    {
        /* "%2" at the end of the span, "F" beyond it: not read. */
        const char *s = "ab%2F";
        CHECK_EQ_I64(cm_pct_decode(s, 4, out, sizeof out, &n), CM_EINVAL);
        CHECK_EQ_I64(cm_pct_decode(s, 5, out, sizeof out, &n), CM_OK);
        CHECK_STR(out, "ab/");
        CHECK_EQ_I64(cm_pct_decode(s, 2, out, sizeof out, &n), CM_OK);
        CHECK_STR(out, "ab");
    }
    {
        char raw[3] = {'%', '4', '1'};
        CHECK_EQ_I64(cm_pct_decode(raw, sizeof raw, out, sizeof out, &n), CM_OK);
        CHECK_STR(out, "A");
    }

    /* outsz must hold the decoded bytes and the NUL. */
    {
        char small[4];

        CHECK_EQ_I64(dec("abc", small, sizeof small, &n), CM_OK);
        CHECK_STR(small, "abc");
        CHECK_EQ_I64(dec("abcd", small, sizeof small, &n), CM_ETOOBIG);
        CHECK_EQ_I64(dec("%41%42%43", small, sizeof small, &n), CM_OK);
        CHECK_STR(small, "ABC");
        CHECK_EQ_I64(dec("%41%42%43%44", small, sizeof small, &n), CM_ETOOBIG);
        CHECK_EQ_I64(dec("", small, 1, &n), CM_OK);
        CHECK_EQ_I64(dec("a", small, 1, &n), CM_ETOOBIG);
        CHECK_EQ_I64(dec("", small, 0, &n), CM_ETOOBIG);
        CHECK_EQ_I64(dec("a", NULL, 0, &n), CM_ETOOBIG);
        /* Malformed beats too big: the input is wrong whatever the room. */
        CHECK_EQ_I64(dec("abcdef%2", small, sizeof small, &n), CM_EINVAL);
        /* Only outsz bytes are written: ASan would see an overflow. */
        CHECK_EQ_I64(dec("abcdefghijklmnop", small, sizeof small, &n), CM_ETOOBIG);
    }
    CHECK_EQ_I64(cm_pct_decode(NULL, 1, out, sizeof out, &n), CM_EINVAL);
}

void test_address(void)
{
    valid();
    invalid();
    lengths();
    org();
    decode();
}
