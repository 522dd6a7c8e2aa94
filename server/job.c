#include "job.h"

#include <stdlib.h>

void cm_job_reply(cm_job *j, int status, cm_buf *b)
{
    free(j->body);
    j->body = cm_buf_take(b, &j->body_len);
    j->status = j->body ? status : 500;
    if (!j->body) j->body_len = 0;
}

const char *cm_job_error_body(cm_error_form form, int status, const char *code, const char *field,
                              const char *message, cm_buf *b)
{
    if (form != CM_ERRORS_JSON) return cm_otlp_error(form, status, code, field, message, b);
    cm_buf_add_error(b, code, message, field);
    return "application/json";
}

void cm_job_fail(cm_job *j, int status, const char *code, const char *field, const char *message)
{
    cm_buf b;
    cm_buf_init(&b);
    j->content_type = cm_job_error_body(j->errors, status, code, field, message, &b);
    cm_job_reply(j, status, &b);
}

void cm_job_free(cm_job *j)
{
    if (!j) return;
    if (j->op == CM_OP_CE_EVENTS) cm_ce_free(j->req.interop.events, j->req.interop.nevents);
    if (j->op == CM_OP_HEARTBEAT || j->op == CM_OP_OTLP_TRACES || j->op == CM_OP_CE_EVENTS) {
        free(j->req.heartbeat.hbs);
        cm_buf_free(&j->req.heartbeat.ignored.listed);
    }
    free(j->body);
    free(j);
}
