#include "egress.h"
#include "error.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/* ::ffff:0:0/96, where IPv4 addresses live in IPv6. */
static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
/* 64:ff9b::/96, NAT64's well-known prefix: a gateway turns it into IPv4. */
static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};

/* What may not be reached unless allowed; the first match names the
 * reason, so the narrower IPv6 entries come before ::/96. */
static const struct {
    const char *cidr;
    const char *why;
} internal[] = {
    {"0.0.0.0/8", "unspecified"}, /* Linux connects 0.0.0.0 to the host itself */
    {"10.0.0.0/8", "private"},
    {"100.64.0.0/10", "shared"}, /* carrier-grade NAT, a provider's inside */
    {"127.0.0.0/8", "loopback"},
    {"169.254.0.0/16", "link-local"}, /* also the clouds' metadata services */
    {"172.16.0.0/12", "private"},
    {"192.0.0.0/24", "reserved"},
    {"192.168.0.0/16", "private"},
    {"198.18.0.0/15", "reserved"},
    {"224.0.0.0/4", "multicast"},
    {"240.0.0.0/4", "reserved"}, /* and the broadcast address */
    {"::1/128", "loopback"},
    {"::/128", "unspecified"},
    {"::/96", "reserved"}, /* IPv4-compatible addresses, deprecated */
    {"fe80::/10", "link-local"},
    {"fec0::/10", "site-local"},
    {"fc00::/7", "unique-local"},
    {"ff00::/8", "multicast"},
};
enum { NINTERNAL = sizeof internal / sizeof internal[0] };

/* One "address[/bits]" of len bytes, blanks around it ignored. */
static int parse_cidr(const char *s, size_t len, cm_cidr *out)
{
    while (len && (*s == ' ' || *s == '\t')) s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) len--;
    char text[64];
    if (len == 0 || len >= sizeof text) return CM_EINVAL;
    memcpy(text, s, len);
    text[len] = '\0';
    char *slash = strchr(text, '/');
    if (slash) *slash = '\0';
    int base, max;
    unsigned char v4[4];
    if (inet_pton(AF_INET, text, v4) == 1) {
        memcpy(out->addr, v4_mapped, sizeof v4_mapped);
        memcpy(out->addr + 12, v4, 4);
        base = 96;
        max = 32;
    } else if (inet_pton(AF_INET6, text, out->addr) == 1) {
        base = 0;
        max = 128;
    } else {
        return CM_EINVAL;
    }
    int bits = max;
    if (slash) {
        const char *p = slash + 1;
        if (!*p || strlen(p) > 3) return CM_EINVAL;
        bits = 0;
        for (; *p; p++) {
            if (*p < '0' || *p > '9') return CM_EINVAL;
            bits = bits * 10 + (*p - '0');
        }
        if (bits > max) return CM_EINVAL;
    }
    out->bits = base + bits;
    return CM_OK;
}

int cm_egress_parse_allow(const char *list, cm_egress_allow *out)
{
    memset(out, 0, sizeof *out);
    if (strspn(list, " \t") == strlen(list)) return CM_OK;
    for (const char *p = list;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (out->n == CM_EGRESS_ALLOW_MAX || parse_cidr(p, len, &out->net[out->n]) != CM_OK) return CM_EINVAL;
        out->n++;
        if (!comma) return CM_OK;
        p = comma + 1;
    }
}

static int in_net(const unsigned char a[16], const cm_cidr *n)
{
    int whole = n->bits / 8, rest = n->bits % 8;
    if (memcmp(a, n->addr, (size_t)whole) != 0) return 0;
    if (!rest) return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (n->addr[whole] & mask);
}

const char *cm_egress_refusal(const cm_egress_allow *allow, const struct sockaddr *sa)
{
    unsigned char a[16];
    if (sa->sa_family == AF_INET) {
        memcpy(a, v4_mapped, sizeof v4_mapped);
        memcpy(a + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(a, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        if (memcmp(a, nat64, sizeof nat64) == 0) memcpy(a, v4_mapped, sizeof v4_mapped);
    } else {
        return "not-ip";
    }
    for (int i = 0; allow && i < allow->n; i++)
        if (in_net(a, &allow->net[i])) return NULL;
    for (int i = 0; i < NINTERNAL; i++) {
        cm_cidr n;
        if (parse_cidr(internal[i].cidr, strlen(internal[i].cidr), &n) == CM_OK && in_net(a, &n))
            return internal[i].why;
    }
    return NULL;
}
