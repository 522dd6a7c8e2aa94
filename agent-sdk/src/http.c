/* http.c - HTTP(S) POSTs with libcurl. The only file that uses libcurl.
 * One cm__http is one easy handle: used by one thread at a time, keeping
 * its connection alive between requests. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

#define REPLY_MAX (1024 * 1024)

struct cm__http {
    CURL *curl;
    struct curl_slist *headers;
    long timeout_ms, connect_timeout_ms;
    const _Atomic int64_t *abort_at_ms;
};

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    cm__http *h = ud;
    int64_t at = atomic_load(h->abort_at_ms);
    return at > 0 && cm__now_ms() >= at; /* non-zero aborts the transfer */
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int cm__http_global_init(void)
{
    pthread_once(&once, global_init);
    return global_rc == CURLE_OK ? CM_OK : CM_ENOMEM;
}

cm__http *cm__http_new(const cm__http_opts *o)
{
    cm__http *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->curl = curl_easy_init();
    if (!h->curl) goto fail;
    cm__buf hdr;
    cm__buf_init(&hdr);
    cm__buf_adds(&hdr, "x-api-key: ");
    cm__buf_adds(&hdr, o->api_key);
    struct curl_slist *l = hdr.oom ? NULL : curl_slist_append(NULL, hdr.p);
    cm__buf_free(&hdr);
    if (!l) goto fail;
    h->headers = l;
    if (!(l = curl_slist_append(h->headers, "Content-Type: application/json"))) goto fail;
    if (!(l = curl_slist_append(h->headers, "Expect:"))) goto fail; /* no 100-continue round trip */
    if (!(l = curl_slist_append(h->headers, "User-Agent: costmesh-sdk-c/" CM_VERSION_STRING))) goto fail;
    h->timeout_ms = o->timeout_ms;
    h->connect_timeout_ms = o->connect_timeout_ms;
    h->abort_at_ms = o->abort_at_ms;
    CURL *c = h->curl;
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for DNS timeouts */
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, h->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, h->connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    if (o->ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
    if (h->abort_at_ms) {
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, h);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    }
    return h;
fail:
    cm__http_free(h);
    return NULL;
}

void cm__http_free(cm__http *h)
{
    if (!h) return;
    if (h->curl) curl_easy_cleanup(h->curl);
    curl_slist_free_all(h->headers);
    free(h);
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    cm__http_res *r = ud;
    size_t n = size * nmemb;
    if (r->body.len + n <= REPLY_MAX) cm__buf_add(&r->body, p, n); /* beyond: ignored, still read */
    return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    cm__http_res *r = ud;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0)
        r->retry_after_s = cm__parse_retry_after(p + sizeof name - 1, n - (sizeof name - 1));
    return n;
}

int cm__http_post(cm__http *h, const char *url, const char *body, size_t len, cm__http_res *res)
{
    res->status = 0;
    res->retry_after_s = -1;
    res->err[0] = 0;
    cm__buf_reset(&res->body);
    CURL *c = h->curl;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, res);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, res);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        const char *m = curl_easy_strerror(rc);
        size_t n = strlen(m);
        if (n >= sizeof res->err) n = sizeof res->err - 1;
        memcpy(res->err, m, n);
        res->err[n] = 0;
        return CM_ENETWORK;
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    res->status = (int)status;
    return status > 0 ? CM_OK : CM_ENETWORK;
}
