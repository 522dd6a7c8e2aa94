/* net.c - libcurl easy API behind cmctl_net_request (see net.h). */
#include "net.h"

#include "ctl.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Replies are small JSON documents; 64 MiB guards against a wrong URL that
 * streams something endless. */
#define MAX_BODY (64u * 1024 * 1024)

typedef struct sink {
    char *p;
    size_t len, cap;
    int too_big;
} sink;

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
    sink *s = arg;
    size_t n = size * nmemb;
    if (n > MAX_BODY - s->len) {
        s->too_big = 1;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n + 1) cap *= 2;
        char *p = realloc(s->p, cap);
        if (!p) return 0;
        s->p = p;
        s->cap = cap;
    }
    memcpy(s->p + s->len, data, n);
    s->len += n;
    s->p[s->len] = '\0';
    return n;
}

int cmctl_net_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? CMCTL_OK : CMCTL_ENET;
}

void cmctl_net_cleanup(void)
{
    curl_global_cleanup();
}

static struct curl_slist *add_header(struct curl_slist *list, const char *name, const char *value, int *ok)
{
    size_t n = strlen(name) + strlen(value) + 1;
    char *h = malloc(n);
    struct curl_slist *l = NULL;
    if (h) {
        snprintf(h, n, "%s%s", name, value);
        l = curl_slist_append(list, h);
        free(h);
    }
    if (!l) {
        *ok = 0;
        return list;
    }
    return l;
}

int cmctl_net_request(const char *method, const char *url, const char *api_key, const char *body,
                      const char *extra_header, cmctl_resp *out, char *err, size_t errsz)
{
    char ebuf[CURL_ERROR_SIZE] = "";
    sink s = {NULL, 0, 0, 0};
    struct curl_slist *hdrs = NULL;
    int ok = 1;
    out->status = 0;
    out->body = NULL;
    out->len = 0;

    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(err, errsz, "could not start libcurl");
        return CMCTL_ENET;
    }
    hdrs = add_header(hdrs, "x-api-key: ", api_key, &ok);
    hdrs = add_header(hdrs, "Accept: ", "application/json", &ok);
    if (body) hdrs = add_header(hdrs, "Content-Type: ", "application/json", &ok);
    /* An empty "Expect:" stops curl from waiting for 100-continue. */
    hdrs = add_header(hdrs, "Expect:", "", &ok);
    if (extra_header) hdrs = add_header(hdrs, extra_header, "", &ok);
    if (!ok) {
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(c);
        return CMCTL_ENOMEM;
    }

    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    /* The key must not follow a redirect to another host. */
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");

    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    } else if (s.too_big) {
        snprintf(err, errsz, "%s: the answer is over %u bytes", url, MAX_BODY);
    } else {
        snprintf(err, errsz, "%s: %s", url, ebuf[0] ? ebuf : curl_easy_strerror(rc));
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        free(s.p);
        return CMCTL_ENET;
    }
    if (!s.p) {
        s.p = calloc(1, 1);
        if (!s.p) return CMCTL_ENOMEM;
    }
    out->body = s.p;
    out->len = s.len;
    return CMCTL_OK;
}

void cmctl_resp_free(cmctl_resp *r)
{
    if (!r) return;
    free(r->body);
    r->body = NULL;
    r->len = 0;
}
