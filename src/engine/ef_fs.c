/*
** ef_fs.c — files that must survive a crash: mkdir -p, and whole-file writes that land
** atomically (temporary name in the same directory, fsync, rename, fsync the directory).
*/
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include "ef_engine.h"

static void seterr(char *err, size_t n, const char *what, int e) {
  if (err && n)
    snprintf(err, n, "%s: %s", what, strerror(e));
}

int ef_write_all(int fd, const void *data, size_t len) {
  const char *p = data;
  size_t off = 0;
  while (off < len) {
    ssize_t w = write(fd, p + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return w < 0 ? errno : EIO;
    off += (size_t)w;
  }
  return 0;
}

int ef_mkdir_p(const char *path, char *err, size_t errlen) {
  size_t n = strlen(path);
  char *p = malloc(n + 1);
  if (p == NULL) {
    seterr(err, errlen, path, ENOMEM);
    return -1;
  }
  memcpy(p, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (p[i] != '/' && p[i] != '\0')
      continue;
    char c = p[i];
    p[i] = '\0';
    if (mkdir(p, 0777) != 0 && errno != EEXIST) {
      seterr(err, errlen, p, errno);
      free(p);
      return -1;
    }
    p[i] = c;
  }
  struct stat st;
  int ok = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
  if (!ok)
    seterr(err, errlen, path, ENOTDIR);
  free(p);
  return ok ? 0 : -1;
}

/*
** mkstemps() creates files 0600; results are ordinary user files, so give them the mode a
** plain fopen() would (0666 less the umask).
*/
int ef_mktemp(char *tmpl, int suffixlen) {
  int fd = mkstemps(tmpl, suffixlen);
  if (fd < 0)
    return -1;
  mode_t mask = umask(0);
  umask(mask);
  (void)fchmod(fd, 0666 & ~mask);
  (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
}

int ef_fsync_dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir;
  if (slash == NULL) {
    dir = malloc(2);
    if (dir)
      strcpy(dir, ".");
  } else {
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    dir = malloc(n + 1);
    if (dir) {
      memcpy(dir, path, n);
      dir[n] = '\0';
    }
  }
  if (dir == NULL)
    return -1;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  free(dir);
  if (fd < 0)
    return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

/*
** The temporary file is hidden beside the target (".name.XXXXXX.part"), so a crash mid-write
** leaves nothing that looks like a result.
*/
int ef_write_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen) {
  size_t n = strlen(path);
  const char *slash = strrchr(path, '/');
  size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
  char *tmp = malloc(n + sizeof "..XXXXXX.part");
  if (tmp == NULL) {
    seterr(err, errlen, path, ENOMEM);
    return -1;
  }
  snprintf(tmp, n + sizeof "..XXXXXX.part", "%.*s.%s.XXXXXX.part", (int)dirlen, path, path + dirlen);
  int fd = ef_mktemp(tmp, 5);
  if (fd < 0) {
    seterr(err, errlen, path, errno);
    free(tmp);
    return -1;
  }
  int e = ef_write_all(fd, data, len);
  if (e == 0 && fsync(fd) != 0)
    e = errno;
  if (close(fd) != 0 && e == 0)
    e = errno;
  if (e == 0 && rename(tmp, path) != 0)
    e = errno;
  if (e != 0) {
    (void)unlink(tmp);
    free(tmp);
    seterr(err, errlen, path, e);
    return -1;
  }
  free(tmp);
  (void)ef_fsync_dir_of(path);
  return 0;
}

/*
** One record of a journal: O_APPEND so concurrent writers never interleave inside a write,
** fdatasync before returning so a crash right after cannot lose it.
*/
int ef_append_durable(const char *path, const void *data, size_t len, char *err, size_t errlen) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) {
    seterr(err, errlen, path, errno);
    return -1;
  }
  int e = ef_write_all(fd, data, len);
  if (e == 0 && fdatasync(fd) != 0)
    e = errno;
  if (close(fd) != 0 && e == 0)
    e = errno;
  if (e != 0) {
    seterr(err, errlen, path, e);
    return -1;
  }
  return 0;
}

int ef_dir_each(const char *path, int (*fn)(void *ud, const char *name), void *ud, char *err,
                size_t errlen) {
  DIR *d = opendir(path);
  if (d == NULL) {
    seterr(err, errlen, path, errno);
    return -1;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    if (fn(ud, e->d_name) != 0)
      break;
  }
  closedir(d);
  return 0;
}
