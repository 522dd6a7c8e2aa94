/* test_config.c - where Redis is: redis-url alone, or Sentinels and the name
 * of the primary they monitor, which go together; and where a 202 is
 * durable, with the replicas a Redis ACK waits for. */
#include "unit.h"

#include "config.h"
#include "error.h"

#include <stdlib.h>

/* Loads argv[1..] over the defaults, with no COSTMESH_ variable of Redis in
 * the way; err gets the reason of a refusal. */
static int load(cm_config *c, char *err, size_t errsz, const char *a1, const char *a2, const char *a3,
                const char *a4)
{
    unsetenv("COSTMESH_REDIS_URL");
    unsetenv("COSTMESH_REDIS_SENTINEL");
    unsetenv("COSTMESH_REDIS_SENTINEL_MASTER");
    unsetenv("COSTMESH_DURABLE");
    unsetenv("COSTMESH_REDIS_WAIT_REPLICAS");
    char *argv[] = {(char *)"costmeshd", (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL};
    int argc = 1;
    while (argc < 5 && argv[argc]) argc++;
    err[0] = '\0';
    return cm_config_load(c, argc, argv, err, errsz);
}

void test_config(void)
{
    cm_config c;
    char err[256];

    CHECK_EQ_I64(load(&c, err, sizeof err, NULL, NULL, NULL, NULL), CM_OK);
    CHECK_EQ_I64(c.redis.nsentinels, 0);
    CHECK_STR(c.redis.server.host, "127.0.0.1");
    CHECK_EQ_I64(c.redis.server.port, 6379);

    CHECK_EQ_I64(load(&c, err, sizeof err, "--redis-sentinel=10.0.0.5:26379,sentinel-b:26380",
                      "--redis-sentinel-master", "cm-main.1", "--redis-url=redis://unused:1/5"),
                 CM_OK);
    CHECK_EQ_I64(c.redis.nsentinels, 2);
    CHECK_STR(c.redis.sentinels[0].host, "10.0.0.5");
    CHECK_EQ_I64(c.redis.sentinels[0].port, 26379);
    CHECK_STR(c.redis.sentinels[1].host, "sentinel-b");
    CHECK_EQ_I64(c.redis.sentinels[1].port, 26380);
    CHECK_STR(c.redis.master, "cm-main.1");
    CHECK_EQ_I64(c.redis.db, 5); /* the database still comes from redis-url */

    /* Malformed lists and names are refused, naming the flag. */
    static const char *const bad_lists[] = {
        "h:1,", ",h:1", "h:1,,h:2", "h", "h:0", "h:65536", ":26379",
        "a:1,b:1,c:1,d:1,e:1,f:1,g:1,h:1,i:1", /* more than CM_STORE_MAX_SENTINELS */
    };
    for (size_t i = 0; i < sizeof bad_lists / sizeof bad_lists[0]; i++) {
        CHECK_EQ_I64(load(&c, err, sizeof err, "--redis-sentinel", bad_lists[i], "--redis-sentinel-master", "m"),
                     CM_EINVAL);
        CHECK(strstr(err, "redis-sentinel") != NULL);
    }
    CHECK_EQ_I64(load(&c, err, sizeof err, "--redis-sentinel", "h:1", "--redis-sentinel-master", "my master"),
                 CM_EINVAL);
    CHECK(strstr(err, "redis-sentinel-master") != NULL);

    /* One without the other would silently ignore half of the setting. */
    CHECK_EQ_I64(load(&c, err, sizeof err, "--redis-sentinel", "h:26379", NULL, NULL), CM_EINVAL);
    CHECK(strstr(err, "redis-sentinel-master") != NULL);
    CHECK_EQ_I64(load(&c, err, sizeof err, "--redis-sentinel-master", "m", NULL, NULL), CM_EINVAL);
    CHECK(strstr(err, "redis-sentinel") != NULL);

    /* Durable point: postgres by default, redis on request, nothing else. */
    CHECK_EQ_I64(load(&c, err, sizeof err, NULL, NULL, NULL, NULL), CM_OK);
    CHECK(!c.durable_redis);
    CHECK_EQ_I64(c.wait_replicas, 0);
    CHECK_EQ_I64(load(&c, err, sizeof err, "--durable", "redis", NULL, NULL), CM_OK);
    CHECK(c.durable_redis);
    CHECK_EQ_I64(load(&c, err, sizeof err, "--durable", "Redis", NULL, NULL), CM_EINVAL);
    CHECK(strstr(err, "durable") != NULL);
    /* With Sentinel an ACK waits for a replica unless told otherwise. */
    CHECK_EQ_I64(load(&c, err, sizeof err, "--redis-sentinel=h:1", "--redis-sentinel-master=m", NULL, NULL), CM_OK);
    CHECK_EQ_I64(c.wait_replicas, 1);
    CHECK_EQ_I64(load(&c, err, sizeof err, "--redis-sentinel=h:1", "--redis-sentinel-master=m",
                      "--redis-wait-replicas=0", NULL),
                 CM_OK);
    CHECK_EQ_I64(c.wait_replicas, 0);
    CHECK_EQ_I64(load(&c, err, sizeof err, "--redis-wait-replicas", "2", NULL, NULL), CM_OK);
    CHECK_EQ_I64(c.wait_replicas, 2);
    CHECK_EQ_I64(load(&c, err, sizeof err, "--redis-wait-replicas", "-1", NULL, NULL), CM_EINVAL);
    CHECK_EQ_I64(load(&c, err, sizeof err, "--queue-max", "999", NULL, NULL), CM_EINVAL);
}
