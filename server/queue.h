/* queue.h - the one intrusive FIFO: nodes link through a pointer field of
 * their own, so queuing never allocates and a node is in one queue at a time.
 *
 *     CM_QUEUE_DEFINE(jobq, cm_job, next)
 *
 * declares the type `jobq` (zero-initialised: empty) and, for it,
 *
 *     void    jobq_push(jobq *q, cm_job *n);  appends n (its link is reset)
 *     cm_job *jobq_pop(jobq *q);              removes the first node, NULL when
 *                                             empty; the node's link is reset
 *     jobq    jobq_take(jobq *q);             moves every node out (q is left
 *                                             empty), e.g. to run them outside
 *                                             a lock
 *
 * q->head is the first node (NULL when empty); the others follow through
 * the link field, which callers may read but never write.
 *
 * The functions are generated per node type, rather than shared through
 * void pointers and an offset, so a wrong node type is a compile error.
 * They are marked unused, as BSD's RB_GENERATE_STATIC does, because a
 * module that never calls one would otherwise fail -Wunused-function. */
#ifndef CM_QUEUE_H
#define CM_QUEUE_H

#include <stddef.h>

#define CM_QUEUE_DEFINE(name, type, link)                                     \
    typedef struct {                                                          \
        type *head, *tail;                                                    \
    } name;                                                                   \
                                                                              \
    __attribute__((unused)) static inline void name##_push(name *q, type *n) \
    {                                                                         \
        n->link = NULL;                                                       \
        if (q->tail) q->tail->link = n;                                       \
        else q->head = n;                                                     \
        q->tail = n;                                                          \
    }                                                                         \
                                                                              \
    __attribute__((unused)) static inline type *name##_pop(name *q)          \
    {                                                                         \
        type *n = q->head;                                                    \
        if (!n) return NULL;                                                  \
        q->head = n->link;                                                    \
        if (!q->head) q->tail = NULL;                                         \
        n->link = NULL;                                                       \
        return n;                                                             \
    }                                                                         \
                                                                              \
    __attribute__((unused)) static inline name name##_take(name *q)          \
    {                                                                         \
        name all = *q;                                                        \
        q->head = q->tail = NULL;                                             \
        return all;                                                           \
    }

#endif
