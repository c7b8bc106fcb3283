/*
** ef_internal.h — what ef_xfer.c and ef_loop.c share and nobody else sees: the transfer's
** layout and the loop's intrusive lists. A transfer sits on at most one list of one loop
** (running, or done-but-not-yet-popped); its prev/next links are that membership.
*/
#ifndef EF_INTERNAL_H
#define EF_INTERNAL_H

#include <curl/curl.h>
#include "ef_engine.h"

#define EF_HEAD_BYTES 32

typedef struct ef_list {
  ef_xfer *head;
  ef_xfer *tail;
  size_t n;
} ef_list;

struct ef_xfer {
  ef_xfer_state state;
  ef_loop *loop;            /* set while running or waiting on the done list */
  ef_list *on;              /* the list this transfer is linked into, or NULL */
  ef_xfer *prev, *next;
  CURL *easy;               /* exists only while running */

  /* request */
  char *url;
  char *method;
  struct curl_slist *headers;
  char *body;
  size_t body_len;
  int has_body;
  long connect_ms, total_ms, low_bytes, low_secs;
  size_t max_body;          /* 0 = unlimited */
  int follow;
  int once;                 /* never let libcurl send this request a second time */
  size_t sent;              /* body bytes the read callback handed to libcurl (once mode) */

  /* response */
  ef_buf resp;
  ef_buf hdrs;
  size_t received;
  unsigned char head[EF_HEAD_BYTES];
  size_t head_len;
  long status;
  long new_connections;     /* connections this transfer had to open (0: it reused one) */
  size_t uploaded;          /* libcurl's count of body bytes sent, read when it finished */
  double seconds;
  const char *code;         /* static string */
  char *errmsg;             /* owned; NULL when ok */
  char errbuf[CURL_ERROR_SIZE];
  int sink_fault;           /* our own reason for aborting the write callback */
  int sink_errno;

  /* event-stream mode: events parsed as they arrive, queued as [u32 length][bytes] records */
  int sse;
  ef_sse parser;
  ef_buf events;
  int news;                 /* on the loop's news list, at index news_at */
  size_t news_at;

  /* file sink */
  int fd;                   /* -1 when none */
  char *temp_path;
};

void ef_list_push(ef_list *l, ef_xfer *x);
/* Tells the loop a running transfer has new events (ef_loop.c); called from a callback, so it
** only records. */
void ef_loop_note_news(ef_loop *l, ef_xfer *x);
void ef_list_unlink(ef_xfer *x);

/* Configures x->easy from the request fields; 0 or -1 with err. (ef_xfer.c) */
int ef_xfer_prepare(ef_xfer *x, char *err, size_t errlen);
/* Records the outcome of a finished or aborted transfer; the loop then reclaims x->easy. */
void ef_xfer_finish(ef_xfer *x, CURLcode rc);

/* A malloc'd copy of s, or NULL (ef_buf.c). */
char *ef_strdup(const char *s);

/* Stable storage for one descriptor: data (fdatasync where there is one) or data and
** metadata (fsync; F_FULLFSYNC on macOS). 0 or -1 with errno. (ef_fs.c) */
int ef_sync_data(int fd);
int ef_sync_full(int fd);
int ef_sync_written(int fd);
/* Whole-file write through a hidden temporary name; 0 or the errno (EEXIST: replace 0 and
** the name is taken). (ef_fs.c) */
int ef_write_file(const char *path, const void *data, size_t len, int replace, int sync_dir,
                  char *err, size_t errlen);

/* Names a temporary file: rename (replace) or never replacing (EEXIST). 0 or an errno. */
int ef_place(const char *tmp, const char *final, int replace);

/* The worker pool behind ef_loop_disk (ef_disk.c); every call but the workers' own is made
** on the loop's thread. */
typedef struct ef_disk ef_disk;
ef_disk *ef_disk_new(void);
void ef_disk_free(ef_disk *k);  /* finishes every queued op, joins the workers */
int ef_disk_fd(const ef_disk *k); /* readable when finished ops wait to be collected */
int ef_disk_submit(ef_disk *k, ef_dop *d, char *err, size_t errlen);
void ef_disk_collect(ef_disk *k, int drain); /* drain: the descriptor was reported readable */
ef_dop *ef_disk_pop(ef_disk *k);
int ef_disk_ready(const ef_disk *k);
size_t ef_disk_pending(const ef_disk *k);
/* A commit op over an open temporary file (fd -1: already synced), taking temp_path. */
ef_dop *ef_dop_commit(int fd, char *temp_path, const char *final_path, int replace);
/* A finished tempfile op's file, taken (the caller's to close and remove): 0, or -1. */
int ef_dop_take_file(ef_dop *d, int *fd, char **path);
/* Runs an op never handed to a loop on the caller's thread (the in-place commit). */
void ef_dop_run(ef_dop *d);
/* After a commit found its name taken: the temporary file's path, now the caller's. */
char *ef_dop_take_temp(ef_dop *d);

#endif
