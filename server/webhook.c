#include "webhook.h"
#include "auth.h"
#include "error.h"
#include "log.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_ATTEMPTS 6
#define MAX_QUEUED 10000

typedef struct delivery {
    struct delivery *next;
    char *url, *secret, *body;
    int attempts;
    int64_t due_ms; /* CLOCK_MONOTONIC */
} delivery;

struct cm_webhook {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    delivery *head; /* under lock, unordered */
    size_t queued;
    int stop;
    _Atomic unsigned long delivered, abandoned;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void delivery_free(delivery *d)
{
    if (!d) return;
    free(d->url);
    free(d->secret);
    free(d->body);
    free(d);
}

static size_t discard(char *p, size_t size, size_t n, void *u)
{
    (void)p;
    (void)u;
    return size * n;
}

/* One attempt; returns the HTTP status, or 0 when there was no answer. */
static long attempt(const delivery *d)
{
    unsigned char mac[CM_KEY_HASH_LEN];
    char hex[2 * CM_KEY_HASH_LEN + 1], sig[128];
    if (cm_auth_hmac(d->secret, strlen(d->secret), d->body, strlen(d->body), mac) != CM_OK) return 0;
    cm_auth_hex(mac, sizeof mac, hex);
    snprintf(sig, sizeof sig, "X-Costmesh-Signature: sha256=%s", hex);
    CURL *c = curl_easy_init();
    if (!c) return 0;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, sig);
    curl_easy_setopt(c, CURLOPT_URL, d->url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static void *worker(void *arg)
{
    cm_webhook *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        int64_t now = mono_ms(), next_due = -1;
        delivery **pp = &w->head, *d = NULL;
        for (; *pp; pp = &(*pp)->next) {
            if ((*pp)->due_ms <= now) {
                d = *pp;
                *pp = d->next;
                w->queued--;
                break;
            }
            if (next_due < 0 || (*pp)->due_ms < next_due) next_due = (*pp)->due_ms;
        }
        if (!d) {
            if (next_due < 0) {
                pthread_cond_wait(&w->wake, &w->lock);
            } else {
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                int64_t ns = until.tv_nsec + (next_due - now) * 1000000;
                until.tv_sec += ns / 1000000000;
                until.tv_nsec = ns % 1000000000;
                pthread_cond_timedwait(&w->wake, &w->lock, &until);
            }
            continue;
        }
        pthread_mutex_unlock(&w->lock);
        long status = attempt(d);
        d->attempts++;
        pthread_mutex_lock(&w->lock);
        if (status >= 200 && status < 300) {
            atomic_fetch_add(&w->delivered, 1);
            delivery_free(d);
        } else if (d->attempts >= MAX_ATTEMPTS) {
            cm_log(CM_LOG_WARN, "event=webhook_abandoned status=%ld attempts=%d", status, d->attempts);
            atomic_fetch_add(&w->abandoned, 1);
            delivery_free(d);
        } else {
            cm_log(CM_LOG_INFO, "event=webhook_retry status=%ld attempt=%d", status, d->attempts);
            d->due_ms = mono_ms() + (500LL << (d->attempts - 1));
            d->next = w->head;
            w->head = d;
            w->queued++;
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int cm_webhook_new(cm_webhook **out)
{
    cm_webhook *w = calloc(1, sizeof *w);
    if (!w) return CM_ENOMEM;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(w);
        return CM_EIO;
    }
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    if (pthread_create(&w->thread, NULL, worker, w) != 0) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        free(w);
        return CM_EIO;
    }
    *out = w;
    return CM_OK;
}

void cm_webhook_free(cm_webhook *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    w->stop = 1;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    while (w->head) {
        delivery *d = w->head;
        w->head = d->next;
        delivery_free(d);
    }
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    curl_global_cleanup();
    free(w);
}

int cm_webhook_post(cm_webhook *w, const char *url, const char *secret, const char *body)
{
    delivery *d = calloc(1, sizeof *d);
    if (!d) return CM_ENOMEM;
    d->url = strdup(url);
    d->secret = strdup(secret);
    d->body = strdup(body);
    if (!d->url || !d->secret || !d->body) {
        delivery_free(d);
        return CM_ENOMEM;
    }
    d->due_ms = mono_ms();
    pthread_mutex_lock(&w->lock);
    if (w->queued >= MAX_QUEUED) {
        pthread_mutex_unlock(&w->lock);
        delivery_free(d);
        return CM_ETOOBIG;
    }
    d->next = w->head;
    w->head = d;
    w->queued++;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    return CM_OK;
}

unsigned long cm_webhook_delivered(const cm_webhook *w)
{
    return atomic_load(&((cm_webhook *)w)->delivered);
}

unsigned long cm_webhook_abandoned(const cm_webhook *w)
{
    return atomic_load(&((cm_webhook *)w)->abandoned);
}
