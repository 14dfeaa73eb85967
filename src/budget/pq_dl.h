/* pq_dl: libpq, loaded when a PostgreSQL ledger is configured and not
 * before. Linking it would load it and its dependencies (GnuTLS, Kerberos,
 * LDAP...) into every process, about 3 MB of resident memory a node with a
 * SQLite ledger never uses. ledger_pg.c includes this header after
 * <libpq-fe.h> (types and constants only): each PQ function it calls goes
 * through the table pq_load filled. */
#ifndef AIPROXY_BUDGET_PQ_DL_H
#define AIPROXY_BUDGET_PQ_DL_H

#include <libpq-fe.h>
#include <stddef.h>

#define PQ_FUNCTIONS(X)                                                                        \
    X(PQclear) X(PQgetvalue) X(PQerrorMessage) X(PQresultStatus) X(PQntuples) X(PQexec)        \
    X(PQstatus) X(PQfinish) X(PQexecParams) X(PQsetNoticeProcessor) X(PQresultErrorField)      \
    X(PQputCopyEnd) X(PQputCopyData) X(PQprepare) X(PQgetisnull) X(PQgetResult) X(PQfreemem)   \
    X(PQexecPrepared) X(PQconninfoParse) X(PQconninfoFree) X(PQconnectdbParams) X(PQcmdStatus)      \
    X(PQcmdTuples)

struct pq_api {
#define X(name) __typeof__(name) *name##_fn;
    PQ_FUNCTIONS(X)
#undef X
};

/* Loads libpq.so.5 once (thread-safe). Returns 0, or -1 with `err` when it
 * is not installed (Debian: libpq5) or lacks a function. */
int pq_load(char *err, size_t errcap);

/* The table (valid after pq_load returned 0). */
extern struct pq_api pq_api;

#ifndef PQ_DL_IMPLEMENTATION
#define PQclear (pq_api.PQclear_fn)
#define PQgetvalue (pq_api.PQgetvalue_fn)
#define PQerrorMessage (pq_api.PQerrorMessage_fn)
#define PQresultStatus (pq_api.PQresultStatus_fn)
#define PQntuples (pq_api.PQntuples_fn)
#define PQexec (pq_api.PQexec_fn)
#define PQstatus (pq_api.PQstatus_fn)
#define PQfinish (pq_api.PQfinish_fn)
#define PQexecParams (pq_api.PQexecParams_fn)
#define PQsetNoticeProcessor (pq_api.PQsetNoticeProcessor_fn)
#define PQresultErrorField (pq_api.PQresultErrorField_fn)
#define PQputCopyEnd (pq_api.PQputCopyEnd_fn)
#define PQputCopyData (pq_api.PQputCopyData_fn)
#define PQprepare (pq_api.PQprepare_fn)
#define PQgetisnull (pq_api.PQgetisnull_fn)
#define PQgetResult (pq_api.PQgetResult_fn)
#define PQfreemem (pq_api.PQfreemem_fn)
#define PQexecPrepared (pq_api.PQexecPrepared_fn)
#define PQconninfoParse (pq_api.PQconninfoParse_fn)
#define PQconninfoFree (pq_api.PQconninfoFree_fn)
#define PQconnectdbParams (pq_api.PQconnectdbParams_fn)
#define PQcmdStatus (pq_api.PQcmdStatus_fn)
#define PQcmdTuples (pq_api.PQcmdTuples_fn)
#endif

#endif
