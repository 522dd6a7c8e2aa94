/* net.h - one HTTP exchange; the only module that includes libcurl.
 *
 * Not thread-safe: costmeshctl is single-threaded, and cmctl_net_init()
 * must run before any other thread could exist (curl_global_init). */
#ifndef CMCTL_NET_H
#define CMCTL_NET_H

#include <stddef.h>

typedef struct cmctl_resp {
    long status;  /* HTTP status, 0 when there was no answer */
    char *body;   /* owned, NUL-terminated (may contain other NULs); "" when empty */
    size_t len;
} cmctl_resp;

int cmctl_net_init(void);
void cmctl_net_cleanup(void);

/* Sends METHOD url with the API key in x-api-key, and body (JSON text, may
 * be NULL) as application/json. extra_header ("Name: value", may be NULL) is
 * sent as well. On CMCTL_OK *out holds the answer whatever its status (free
 * with cmctl_resp_free). On CMCTL_ENET err holds curl's reason. */
int cmctl_net_request(const char *method, const char *url, const char *api_key, const char *body,
                      const char *extra_header, cmctl_resp *out, char *err, size_t errsz);

/* Frees the body; NULL is fine. */
void cmctl_resp_free(cmctl_resp *r);

#endif
