/* egress.h - which addresses a webhook delivery may connect to.
 *
 * A webhook URL is chosen by a tenant, so without a check costmeshd would
 * post to whatever its own network reaches: Redis, PostgreSQL, a cloud's
 * metadata service. Deliveries are therefore refused, at the moment of the
 * connect and for the very address being connected, when it is loopback,
 * link-local, private, unique-local, unspecified, multicast or reserved.
 * IPv4 addresses inside IPv6 (::ffff:a.b.c.d and the NAT64 prefix
 * 64:ff9b::/96) are judged by the IPv4 address they carry. A deployment
 * whose receivers are internal allows their networks (COSTMESH_WEBHOOK_ALLOW).
 *
 * Pure functions, no allocation, thread-safe. */
#ifndef CM_EGRESS_H
#define CM_EGRESS_H

#include <stddef.h>
#include <sys/socket.h>

#define CM_EGRESS_ALLOW_MAX 16 /* networks in an allow list */

/* One network; IPv4 is held as ::ffff:a.b.c.d with 96 more prefix bits. */
typedef struct {
    unsigned char addr[16];
    int bits;
} cm_cidr;

/* Networks that may be reached although they are internal. */
typedef struct {
    cm_cidr net[CM_EGRESS_ALLOW_MAX];
    int n;
} cm_egress_allow;

/* Parses a comma-separated list of CIDRs ("10.0.0.0/8, fd00::/8"); an
 * address without a prefix length is one host; "" is the empty list. CM_OK,
 * or CM_EINVAL for a malformed entry or more than CM_EGRESS_ALLOW_MAX. */
int cm_egress_parse_allow(const char *list, cm_egress_allow *out);

/* NULL when sa (AF_INET or AF_INET6) may be connected to; otherwise why
 * not, a static word such as "loopback" or "private". Other families are
 * refused. allow may be NULL: nothing internal is allowed. */
const char *cm_egress_refusal(const cm_egress_allow *allow, const struct sockaddr *sa);

#endif
