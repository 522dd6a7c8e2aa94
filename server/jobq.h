/* jobq.h - a FIFO of jobs, linked through cm_job.next: the bridge's hand-off
 * from the HTTP threads and the heartbeats waiting for a group commit. A job
 * is in one of them at a time, so one link serves both. */
#ifndef CM_JOBQ_H
#define CM_JOBQ_H

#include "bridge.h"
#include "queue.h"

CM_QUEUE_DEFINE(cm_jobq, cm_job, next)

#endif
