/* test_egress.c - the allow list's syntax, and which addresses a webhook
 * may reach: every internal range, IPv4 inside IPv6, and what an allow list
 * lets through. */
#include "unit.h"

#include "egress.h"
#include "error.h"

#include <arpa/inet.h>
#include <netinet/in.h>

/* The refusal for a numeric address, "" when it may be reached. */
static const char *judge(const cm_egress_allow *allow, const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) v4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) v6->sin6_family = AF_INET6;
    else return "(not an address)";
    const char *why = cm_egress_refusal(allow, (const struct sockaddr *)&ss);
    return why ? why : "";
}

void test_egress(void)
{
    static const struct {
        const char *ip, *why;
    } cases[] = {
        {"127.0.0.1", "loopback"},       {"127.255.1.2", "loopback"},     {"::1", "loopback"},
        {"::ffff:127.0.0.1", "loopback"}, {"64:ff9b::7f00:1", "loopback"}, {"0.0.0.0", "unspecified"},
        {"::", "unspecified"},           {"10.1.2.3", "private"},         {"172.16.0.1", "private"},
        {"172.31.255.255", "private"},   {"192.168.1.1", "private"},      {"::ffff:10.0.0.1", "private"},
        {"100.64.0.1", "shared"},        {"169.254.169.254", "link-local"}, {"fe80::1", "link-local"},
        {"fd00::1", "unique-local"},     {"fc00::1", "unique-local"},     {"fec0::1", "site-local"},
        {"224.0.0.1", "multicast"},      {"ff02::1", "multicast"},        {"255.255.255.255", "reserved"},
        {"::7f00:1", "reserved"},        {"8.8.8.8", ""},                 {"172.32.0.1", ""},
        {"100.128.0.1", ""},             {"2001:4860:4860::8888", ""},    {"::ffff:8.8.8.8", ""},
        {"64:ff9b::808:808", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) CHECK_STR(judge(NULL, cases[i].ip), cases[i].why);

    cm_egress_allow allow;
    CHECK(cm_egress_parse_allow("", &allow) == CM_OK && allow.n == 0);
    CHECK(cm_egress_parse_allow("  ", &allow) == CM_OK && allow.n == 0);
    CHECK_STR(judge(&allow, "127.0.0.1"), "loopback");

    /* An allowed network reaches its addresses in every spelling; nothing
     * else changes. */
    CHECK(cm_egress_parse_allow("127.0.0.0/8, fd00::/8,10.0.0.5", &allow) == CM_OK);
    CHECK_EQ_I64(allow.n, 3);
    CHECK_STR(judge(&allow, "127.0.0.1"), "");
    CHECK_STR(judge(&allow, "::ffff:127.0.0.1"), "");
    CHECK_STR(judge(&allow, "64:ff9b::7f00:1"), "");
    CHECK_STR(judge(&allow, "fd12::1"), "");
    CHECK_STR(judge(&allow, "10.0.0.5"), "");
    CHECK_STR(judge(&allow, "10.0.0.6"), "private");
    CHECK_STR(judge(&allow, "::1"), "loopback");
    CHECK_STR(judge(&allow, "fc00::1"), "unique-local");
    CHECK_STR(judge(&allow, "8.8.8.8"), "");

    CHECK(cm_egress_parse_allow("172.16.0.0/13", &allow) == CM_OK);
    CHECK_STR(judge(&allow, "172.23.255.255"), "");
    CHECK_STR(judge(&allow, "172.24.0.1"), "private");
    CHECK(cm_egress_parse_allow("0.0.0.0/0", &allow) == CM_OK);
    CHECK_STR(judge(&allow, "169.254.169.254"), "");
    CHECK_STR(judge(&allow, "fe80::1"), "link-local");

    static const char *const bad[] = {
        "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/8,", ",10.0.0.0/8", "10.0.0.0/8,,::1",
        "2130706433", "0x7f.1", "127.1", "localhost", "10.0.0.0/-1", "10.0.0.0/8x", "fd00::/0008",
        "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = cm_egress_parse_allow(bad[i], &allow);
        if (rc != CM_EINVAL) fprintf(stderr, "allow list accepted: %s\n", bad[i]);
        CHECK(rc == CM_EINVAL);
    }
    char sixteen[256] = "";
    for (int i = 0; i < CM_EGRESS_ALLOW_MAX; i++) snprintf(sixteen + strlen(sixteen), 32, "%s10.0.0.%d", i ? "," : "", i);
    CHECK(cm_egress_parse_allow(sixteen, &allow) == CM_OK && allow.n == CM_EGRESS_ALLOW_MAX);
}
