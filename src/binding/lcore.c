/*
** lcore.c — luaopen_editflow_core, the C half of the editflow module (`editflow.core`).
** Registers the Loop, Transfer and Lock types, JSON decoding (ljson.c) and a few byte helpers
** that are too slow or too awkward in Lua: base64 for data: URIs, image sniffing and
** dimensions, safe file names, atomic writes, journal appends, bounded reads of local inputs,
** mkdir -p, globs, SHA-256 and Ed25519 verification (webhook signatures), clocks and process figures
** (CPU, peak RSS, open-file limit). luaopen_editflow_core is the only symbol the module exports.
*/
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "lbinding.h"

#ifndef EDITFLOW_VERSION
#define EDITFLOW_VERSION "0.0.0"
#endif

static int fail(lua_State *L, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  return 2;
}

static int fail_code(lua_State *L, const char *msg, const char *code) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  lua_pushstring(L, code);
  return 3;
}

/*
** A path argument: a string with no NUL byte in it. The C calls behind would stop at the NUL,
** so "a.png\0.txt" would quietly name a.png; it is misuse, and raises naming the argument.
*/
static const char *check_path(lua_State *L, int arg) {
  size_t n;
  const char *s = luaL_checklstring(L, arg, &n);
  luaL_argcheck(L, strlen(s) == n, arg, "must not contain a NUL byte");
  return s;
}

static int core_b64encode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, ef_b64_encoded_len(n) + 1);
  ef_b64_encode((const unsigned char *)s, n, out);
  luaL_pushresultsize(&b, ef_b64_encoded_len(n));
  return 1;
}

/* core.b64decode(s) -> bytes, or nil, message naming the offending offset. */
static int core_b64decode(lua_State *L) {
  size_t n, bad = 0;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, n / 4 * 3 + 3);
  long got = ef_b64_decode(s, n, out, &bad);
  if (got < 0) {
    luaL_pushresultsize(&b, 0);
    return fail(L, lua_pushfstring(L, "invalid base64 at offset %I", (lua_Integer)bad));
  }
  luaL_pushresultsize(&b, (size_t)got);
  return 1;
}

/* core.sniff(bytes) -> extension, MIME type; or nil if not a PNG, JPEG, GIF or WebP. */
static int core_sniff(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  const ef_image_kind *k = ef_sniff_image((const unsigned char *)s, n);
  if (k == NULL) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushstring(L, k->ext);
  lua_pushstring(L, k->mime);
  return 2;
}

/*
** core.image_size(bytes) -> width, height; or nil, message when the bytes are not a PNG, JPEG,
** GIF or WebP, or their header is cut short or malformed (these bytes come from outside).
*/
static int core_image_size(lua_State *L) {
  size_t n;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  const ef_image_kind *k = ef_sniff_image(s, n);
  uint32_t w, h;
  if (k == NULL)
    return fail(L, "not a PNG, JPEG, GIF or WebP image");
  if (ef_image_size(s, n, &w, &h) != 0)
    return fail(L, lua_pushfstring(L, "no image size in the %s header (cut short or malformed)",
                                   k->ext));
  lua_pushinteger(L, (lua_Integer)w);
  lua_pushinteger(L, (lua_Integer)h);
  return 2;
}

static int core_safe_name(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char out[128];
  ef_safe_name(s, n, out, sizeof out);
  lua_pushstring(L, out);
  return 1;
}

static int core_mkdir(lua_State *L) {
  char err[512];
  if (ef_mkdir_p(check_path(L, 1), err, sizeof err) != 0)
    return fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.write_file(path, bytes) -> true | nil, message. Atomic and durable (see ef_fs.c). */
static int core_write_file(lua_State *L) {
  size_t n;
  const char *path = check_path(L, 1);
  const char *data = luaL_checklstring(L, 2, &n);
  char err[512];
  if (ef_write_atomic(path, data, n, err, sizeof err) != 0)
    return fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.fsync_dir(path) -> true | nil, message: the folder's names on disk, here. */
static int core_fsync_dir(lua_State *L) {
  const char *path = check_path(L, 1);
  int e = ef_sync_dir(path);
  if (e != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot sync the folder %s: %s", path, strerror(e));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int buf_free(lua_State *L) {
  ef_buf_free(luaL_checkudata(L, 1, EF_BUF_MT));
  return 0;
}

/*
** core.read_file(path, max_bytes) -> bytes | nil, message, code ("NOT_REGULAR", "TOO_LARGE",
** "READ_ERROR"). Never blocks (see ef_read_file). The engine's buffer lives in a userdata
** while the string is made, so a memory error there cannot leak it.
*/
static int core_read_file(lua_State *L) {
  const char *path = check_path(L, 1);
  lua_Integer max = luaL_checkinteger(L, 2);
  char err[512];
  luaL_argcheck(L, max >= 0, 2, "must be 0 or more");
  ef_buf *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, EF_BUF_MT);
  const char *code = ef_read_file(path, (uintmax_t)max < SIZE_MAX ? (size_t)max : SIZE_MAX, b,
                                  err, sizeof err);
  if (code)
    return fail_code(L, err, code);
  lua_pushlstring(L, b->data ? b->data : "", b->len);
  ef_buf_free(b);
  return 1;
}

/* core.file_stamp(path) -> "dev:ino:size:mtime:ctime" (a string that changes when the file's
** content may have) | nil, message. */
static int core_file_stamp(lua_State *L) {
  const char *path = check_path(L, 1);
  ef_stamp st;
  if (ef_file_stamp(path, &st) != 0)
    return fail_code(L, strerror(errno), "STAT");
  char text[160];
  snprintf(text, sizeof text, "%llu:%llu:%llu:%lld.%09lld:%lld.%09lld", st.dev, st.ino, st.size,
           st.mtime_s, st.mtime_ns, st.ctime_s, st.ctime_ns);
  lua_pushstring(L, text);
  return 1;
}

static int push_name(void *ud, const char *name) {
  lua_State *L = ud;
  lua_pushstring(L, name);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  return 0;
}

/* core.listdir(path) -> sorted-by-caller array of entry names | nil, message. */
static int core_listdir(lua_State *L) {
  const char *path = check_path(L, 1);
  char err[512];
  lua_newtable(L);
  if (ef_dir_each(path, push_name, L, err, sizeof err) != 0)
    return fail(L, err);
  return 1;
}

/*
** core.glob(pattern [, "files"]) -> the matching paths, sorted by bytes (an empty list when
** nothing matches) | nil, message when glob(3) itself failed. "files" keeps only regular
** files. The engine fills a buffer that a userdata owns, and the list is built only after it
** has returned: a memory error while building it cannot leak the buffer, and no Lua runs
** inside glob(3).
*/
static int core_glob(lua_State *L) {
  static const char *const what[] = {"all", "files", NULL};
  size_t n;
  const char *pattern = luaL_checklstring(L, 1, &n);
  int flags = luaL_checkoption(L, 2, "all", what) == 1 ? EF_GLOB_FILES : 0;
  char err[512];
  luaL_argcheck(L, strlen(pattern) == n, 1, "must not contain a NUL byte");
  ef_buf *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, EF_BUF_MT);
  if (ef_glob(pattern, flags, b, err, sizeof err) != 0)
    return fail(L, err);
  lua_newtable(L);
  lua_Integer i = 0;
  for (size_t off = 0; off < b->len; off += strlen(b->data + off) + 1) {
    lua_pushstring(L, b->data + off);
    lua_rawseti(L, -2, ++i);
  }
  ef_buf_free(b);
  return 1;
}

/* core.hash(bytes) -> 16 hex digits (64-bit FNV-1a): a stable fingerprint for job keys. */
static int core_hash(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", ef_fnv1a64(s, n));
  lua_pushstring(L, hex);
  return 1;
}

/* core.hash64(bytes) -> the same fingerprint as an integer (for table keys). */
static int core_hash64(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_pushinteger(L, (lua_Integer)ef_fnv1a64(s, n));
  return 1;
}

/* core.sha256_file(path) -> the hex digest of the file's bytes, its size; or nil, message.
** Read in pieces: a saved image's journal record without the image in Lua's memory. */
static int core_sha256_file(lua_State *L) {
  const char *path = check_path(L, 1);
  unsigned char out[32];
  long long size = 0;
  if (ef_sha256_file(path, out, &size) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  char hex[65];
  for (int i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", out[i]);
  lua_pushlstring(L, hex, 64);
  lua_pushinteger(L, (lua_Integer)size);
  return 2;
}

/* core.sha256(bytes) -> the 32-byte digest (raw). */
static int core_sha256(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned char out[32];
  if (ef_sha256(s, n, out) != 0)
    return luaL_error(L, "sha256: libcrypto failed");
  lua_pushlstring(L, (const char *)out, sizeof out);
  return 1;
}

/*
** core.ed25519_verify(pub, msg, sig) -> boolean. pub is the 32 raw bytes of the key, sig the
** 64 raw bytes of the signature; any other length is a signature that does not verify (the
** bytes come from the network), not misuse. Only a libcrypto failure raises.
*/
static int core_ed25519_verify(lua_State *L) {
  size_t np, nm, ns;
  const char *pub = luaL_checklstring(L, 1, &np);
  const char *msg = luaL_checklstring(L, 2, &nm);
  const char *sig = luaL_checklstring(L, 3, &ns);
  int rc = ef_ed25519_verify((const unsigned char *)pub, np, msg, nm,
                             (const unsigned char *)sig, ns);
  if (rc < 0)
    return luaL_error(L, "ed25519_verify: libcrypto failed");
  lua_pushboolean(L, rc == 1);
  return 1;
}

static int core_monotime(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* Wall-clock seconds (for comparing with timestamps from elsewhere, e.g. a server's). */
static int core_walltime(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.raise_nofile() -> the new soft limit on open files (raised to the hard limit). */
static int core_raise_nofile(lua_State *L) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 0;
  lua_pushinteger(L, rl.rlim_cur == RLIM_INFINITY ? LUA_MAXINTEGER : (lua_Integer)rl.rlim_cur);
  return 1;
}

/* core.peak_rss() -> the process's peak resident set in bytes (Linux: VmHWM), or nil. */
static int core_peak_rss(lua_State *L) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return 0;
  lua_pushinteger(L, (lua_Integer)ru.ru_maxrss * 1024);
  return 1;
}

/* core.cpu_time() -> user + system CPU seconds of this process. */
static int core_cpu_time(lua_State *L) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return 0;
  lua_pushnumber(L, (lua_Number)ru.ru_utime.tv_sec + (lua_Number)ru.ru_utime.tv_usec / 1e6 +
                        (lua_Number)ru.ru_stime.tv_sec + (lua_Number)ru.ru_stime.tv_usec / 1e6);
  return 1;
}

static int core_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* core.term_width(fd) -> columns of the terminal on fd, or nil (not a terminal, or unknown). */
static int core_term_width(lua_State *L) {
  struct winsize ws;
  if (ioctl((int)luaL_checkinteger(L, 1), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    lua_pushinteger(L, ws.ws_col);
  else
    lua_pushnil(L);
  return 1;
}

static int core_loop(lua_State *L) { return ef_lua_loop_new(L); }
static int core_lock(lua_State *L) { return ef_lua_lock_new(L); }

static const luaL_Reg corelib[] = {
  {"loop", core_loop},           {"b64encode", core_b64encode}, {"b64decode", core_b64decode},
  {"sniff", core_sniff},         {"safe_name", core_safe_name}, {"mkdir", core_mkdir},
  {"image_size", core_image_size},
  {"write_file", core_write_file}, {"monotime", core_monotime}, {"walltime", core_walltime},
  {"raise_nofile", core_raise_nofile}, {"isatty", core_isatty}, {"term_width", core_term_width}, 
  {"open_log", ef_lua_file_open}, {"fsync_dir", core_fsync_dir},
  {"hash", core_hash}, {"hash64", core_hash64}, {"fpmap", ef_lua_fpmap_new}, {"listdir", core_listdir}, {"peak_rss", core_peak_rss}, {"cpu_time", core_cpu_time},
  {"read_file", core_read_file}, {"lock", core_lock},
  {"sha256", core_sha256}, {"sha256_file", core_sha256_file}, {"ed25519_verify", core_ed25519_verify}, {"file_stamp", core_file_stamp},
  {"glob", core_glob},
  {NULL, NULL}};

__attribute__((visibility("default"))) int luaopen_editflow_core(lua_State *L);

int luaopen_editflow_core(lua_State *L) {
  /* for a stock lua5.4 started with `>&- 2>&-` (ef_open_std_fds says why) */
  int fd = ef_open_std_fds();
  if (fd >= 0)
    return luaL_error(L, "descriptor %d is closed and /dev/null cannot be opened", fd);
  if (ef_global_init() != 0)
    return luaL_error(L, "libcurl global initialisation failed");
  ef_lua_loop_register(L);
  ef_lua_xfer_register(L);
  ef_lua_lock_register(L);
  ef_lua_file_register(L);
  ef_lua_disk_register(L);
  ef_lua_fpmap_register(L);
  luaL_newmetatable(L, EF_BUF_MT);
  lua_pushcfunction(L, buf_free);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newlib(L, corelib);
  ef_lua_json_register(L);
  lua_pushliteral(L, EDITFLOW_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, ef_curl_version());
  lua_setfield(L, -2, "curl_version");
  lua_pushstring(L, ef_loop_backend());
  lua_setfield(L, -2, "poller"); /* "epoll" (loop:pollfd() is a descriptor) or "poll" (nil) */
  return 1;
}
