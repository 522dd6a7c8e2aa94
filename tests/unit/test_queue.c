/* test_queue.c - the intrusive FIFO: order, links reset on the way in and
 * out, take leaving an empty queue, and reuse after draining. */
#include "unit.h"

#include "queue.h"

typedef struct node {
    int value;
    struct node *link;
} node;

CM_QUEUE_DEFINE(nodeq, node, link)

static void empty(void)
{
    nodeq q = {0};
    CHECK(nodeq_pop(&q) == NULL);
    nodeq all = nodeq_take(&q);
    CHECK(all.head == NULL && all.tail == NULL);
}

static void order(void)
{
    node n[5];
    nodeq q = {0};
    for (int i = 0; i < 5; i++) {
        n[i].value = i;
        n[i].link = &n[0]; /* stale: push must not trust it */
        nodeq_push(&q, &n[i]);
    }
    CHECK(q.head == &n[0]);
    CHECK(q.tail == &n[4]);
    CHECK(n[4].link == NULL);
    for (int i = 0; i < 5; i++) {
        node *x = nodeq_pop(&q);
        CHECK(x == &n[i]);
        if (x) CHECK(x->link == NULL);
    }
    CHECK(nodeq_pop(&q) == NULL);
    CHECK(q.head == NULL && q.tail == NULL);

    /* Drained to empty, the tail is gone too: a push starts afresh. */
    nodeq_push(&q, &n[2]);
    CHECK(q.head == &n[2] && q.tail == &n[2]);
    nodeq_push(&q, &n[3]);
    CHECK(nodeq_pop(&q) == &n[2]);
    nodeq_push(&q, &n[1]);
    CHECK(nodeq_pop(&q) == &n[3]);
    CHECK(nodeq_pop(&q) == &n[1]);
    CHECK(nodeq_pop(&q) == NULL);
}

static void take(void)
{
    node n[3] = {{0, NULL}, {1, NULL}, {2, NULL}};
    nodeq q = {0};
    for (int i = 0; i < 3; i++) nodeq_push(&q, &n[i]);
    nodeq all = nodeq_take(&q);
    CHECK(q.head == NULL && q.tail == NULL);
    CHECK(all.head == &n[0] && all.tail == &n[2]);

    /* The source queue is usable while the taken nodes are worked off. */
    node late = {9, NULL};
    nodeq_push(&q, &late);
    int want = 0;
    for (node *x; (x = nodeq_pop(&all));) CHECK_EQ_I64(x->value, want++);
    CHECK_EQ_I64(want, 3);
    CHECK(nodeq_pop(&q) == &late);
}

void test_queue(void)
{
    empty();
    order();
    take();
}
