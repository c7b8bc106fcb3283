/*
** ljson.c — core.json_decode: JSON text to Lua values through the engine's pull parser
** (ef_json.c). The value is built on the Lua stack as the events arrive: each open container
** sits on the stack (an object's pending key above it) until its end event, when it becomes
** the value placed into its parent. Nothing here is allocated outside Lua (the parser lives
** in this C frame, escaped strings are decoded into a luaL_Buffer), so a memory error raised
** anywhere leaves nothing to free.
**
** A container's members wait on the stack until its end (or until there are FLUSH of them) and
** then go into a table made at their number: filling a table made empty would resize and rehash
** it at every power of two, which was most of the cost of decoding a status answer.
**
** The policy editflow.json relies on is kept here, where it is cheap: integers stay exact,
** an integral double that fits lua_Integer becomes an integer (as math.tointeger would),
** null members of objects are left out, null elsewhere is the caller's sentinel, and every
** array gets the caller's metatable (so an empty array stays distinct from an empty object).
**
** core.json_encode is editflow.json's encoder for the plain values it is given every job (a
** submit body, a journal record) in one pass, byte for byte what the Lua encoder in
** editflow.json writes. Anything whose treatment is Lua's to decide -- a table with another
** metatable (its metamethods), a non-string key, a non-finite number, a function, nesting
** past 64 -- is declined (nil), and the Lua encoder then encodes it or raises as it always did.
*/
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lbinding.h"
#include "ef_json.h"

static void push_string(lua_State *L, const ef_json_event *ev) {
  if (!ev->escaped) {
    lua_pushlstring(L, ev->s, ev->len);
    return;
  }
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, ev->len);
  luaL_pushresultsize(&b, ef_json_unescape(ev->s, ev->len, out));
}

/* -2^63 <= d < 2^63 and no fraction: the same integer, exactly. An integer literal too long
** for int64 (no '.', 'e' or 'E' in it) stays a float: as an integer it would be another number. */
static void push_number(lua_State *L, double d, const char *lit, size_t len) {
  int written_as_integer = memchr(lit, '.', len) == NULL && memchr(lit, 'e', len) == NULL
                           && memchr(lit, 'E', len) == NULL;
  if (!written_as_integer && d >= -9223372036854775808.0 && d < 9223372036854775808.0
      && (double)(long long)d == d)
    lua_pushinteger(L, (lua_Integer)(long long)d);
  else
    lua_pushnumber(L, d);
}

#define FLUSH 64 /* stack slots of pending members after which they go into their table */

/* Open containers: the stack slot of each (a placeholder until its table is made), whether it
** is an array, and how many of its elements are already in the table. */
typedef struct open_level {
  int base;
  int array;
  lua_Integer placed;
} open_level;

/*
** The members pending above a container's slot go into its table, made now (sized for them) if
** it does not exist yet. Objects take theirs in document order, so the last of duplicate keys
** wins and a later null removes an earlier value, as rawset one by one would.
*/
static void flush(lua_State *L, open_level *o, int has_mt) {
  int top = lua_gettop(L), pend = top - o->base;
  if (!lua_istable(L, o->base)) {
    lua_createtable(L, o->array ? pend : 0, o->array ? 0 : pend / 2);
    if (o->array && has_mt) {
      lua_pushvalue(L, 2);
      lua_setmetatable(L, -2);
    }
    lua_replace(L, o->base);
  }
  if (o->array) {
    for (int k = pend; k >= 1; k--)
      lua_rawseti(L, o->base, o->placed + k); /* pops the top, the last element first */
    o->placed += pend;
  } else {
    for (int i = o->base + 1; i < top; i += 2) {
      lua_pushvalue(L, i);
      lua_pushvalue(L, i + 1);
      lua_rawset(L, o->base);
    }
  }
  lua_settop(L, o->base);
}

/*
** core.json_decode(text, array_mt, null [, max_depth [, keep]]) -> value | nil, message.
** array_mt: a table set as the metatable of every array, or nil for none. null: what a JSON
** null becomes in arrays and at the top. max_depth: 1..EF_JSON_MAX_DEPTH, default 64.
** keep: a projection of a top-level object, for answers of which the caller reads a few
** members: keep[name] true keeps that member, an integer n keeps it but, when it is an array,
** turns its first n elements into false (the caller has seen them; the length stays). Other
** members are read (the text is checked whole, as without keep) but never become Lua values.
** Invalid text is an operational failure (nil, "expected ':' at byte 17"); bad arguments raise.
*/
static int json_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer max_depth = luaL_optinteger(L, 4, EF_JSON_DEFAULT_DEPTH);
  luaL_argcheck(L, max_depth >= 1 && max_depth <= EF_JSON_MAX_DEPTH, 4, "must be 1..1024");
  if (!lua_isnoneornil(L, 5))
    luaL_checktype(L, 5, LUA_TTABLE);
  lua_settop(L, 5);
  int has_mt = !lua_isnil(L, 2), keep = !lua_isnil(L, 5);
  open_level open[EF_JSON_MAX_DEPTH + 1];
  /* count[d]: elements so far of the array open at depth d; -1 when that level is an object */
  lua_Integer count[EF_JSON_MAX_DEPTH + 1];
  lua_Integer elided = 0;  /* elements of the kept array at depth 2 to turn into false */
  lua_Integer pending = 0; /* the same, for the member whose value comes next */
  int skip = 0;            /* > 0: the value being read is dropped when the container at this
                              depth has it whole */
  ef_json j;
  ef_json_event ev;
  ef_json_init(&j, s, n, (int)max_depth);
  for (;;) {
    ef_json_type type = ef_json_next(&j, &ev);
    if (type == EF_JSON_ERROR) {
      lua_settop(L, 5);
      lua_pushnil(L);
      lua_pushstring(L, j.err);
      return 2;
    }
    if (type == EF_JSON_END)
      return 1; /* the value, alone above the arguments */
    if (skip) {
      /* a container's end or a scalar at the skipped value's level completes it */
      int opens = type == EF_JSON_OBJECT || type == EF_JSON_ARRAY;
      if (opens || type == EF_JSON_KEY || j.depth != skip)
        continue;
      int member = skip == 1;
      skip = 0;
      if (member)
        continue; /* a member of the top object: dropped, key and all */
      lua_pushboolean(L, 0); /* an elided element keeps its place */
    } else if (elided > 0 && count[2] >= 0 && count[2] < elided &&
               (j.depth == 3 ? (type == EF_JSON_OBJECT || type == EF_JSON_ARRAY)
                             : (j.depth == 2 && type != EF_JSON_OBJECT &&
                                type != EF_JSON_ARRAY && type != EF_JSON_ARRAY_END &&
                                type != EF_JSON_OBJECT_END))) {
      /* an element of the kept array that the caller has seen: read past it */
      if (j.depth == 3) {
        skip = 2;
        continue;
      }
      lua_pushboolean(L, 0);
    } else {
      switch (type) {
      case EF_JSON_OBJECT:
      case EF_JSON_ARRAY:
        if (!lua_checkstack(L, FLUSH + 4)) { /* its pending members, and the next level's slot */
          lua_settop(L, 5);
          lua_pushnil(L);
          lua_pushliteral(L, "JSON nested too deeply for the Lua stack");
          return 2;
        }
        lua_pushnil(L); /* the container's slot: its table is made when its members are known */
        open[j.depth].base = lua_gettop(L);
        open[j.depth].array = type == EF_JSON_ARRAY;
        open[j.depth].placed = 0;
        count[j.depth] = type == EF_JSON_ARRAY ? 0 : -1;
        if (j.depth == 2) {
          elided = type == EF_JSON_ARRAY ? pending : 0;
          pending = 0;
        }
        continue;
      case EF_JSON_KEY:
        push_string(L, &ev);
        if (keep && j.depth == 1) {
          lua_pushvalue(L, -1);
          int t = lua_rawget(L, 5);
          int kept = t != LUA_TNIL && !(t == LUA_TBOOLEAN && !lua_toboolean(L, -1));
          pending = t == LUA_TNUMBER ? lua_tointeger(L, -1) : 0;
          lua_pop(L, kept ? 1 : 2); /* the lookup, and the key of a dropped member */
          if (!kept)
            skip = 1;
        }
        continue;
      case EF_JSON_OBJECT_END:
      case EF_JSON_ARRAY_END:
        flush(L, &open[j.depth + 1], has_mt); /* the finished container is the value on top */
        break;
      case EF_JSON_STRING:
        push_string(L, &ev);
        break;
      case EF_JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)ev.i);
        break;
      case EF_JSON_NUMBER:
        push_number(L, ev.d, ev.s, ev.len);
        break;
      case EF_JSON_TRUE:
      case EF_JSON_FALSE:
        lua_pushboolean(L, type == EF_JSON_TRUE);
        break;
      case EF_JSON_NULL:
        if (j.depth > 0 && count[j.depth] < 0)
          lua_pushnil(L); /* rawset below removes the member: {"a":1,"a":null} has no "a" */
        else
          lua_pushvalue(L, 3);
        break;
      default:
        break;
      }
    }
    /* a complete value is on top: it waits there as a member of the container it belongs to */
    if (j.depth == 0)
      continue; /* the whole value; the next event is EF_JSON_END or an error */
    if (count[j.depth] >= 0)
      count[j.depth]++;
    if (lua_gettop(L) - open[j.depth].base >= FLUSH)
      flush(L, &open[j.depth], has_mt);
  }
}

/* ---- encoding ---- */

#define ENC_MAX_DEPTH 64 /* editflow.json's limit: a table nested deeper is the Lua face's error */
#define ENC_DECLINE 1

typedef struct encoder {
  lua_State *L;
  ef_buf *out;  /* owned by a userdata on the stack: a memory error raised anywhere frees it */
  int array_mt; /* stack index of the array metatable (or nil) */
  int null;     /* stack index of the null sentinel */
} encoder;

static void put(encoder *e, const char *p, size_t n) {
  if (ef_buf_append(e->out, p, n) != 0)
    luaL_error(e->L, "not enough memory");
}

/*
** The UTF-8 sequence at s (n > 0 bytes left) as RFC 3629 has it -- no overlong form, nothing
** past U+10FFFF -- except that the three-byte form of a surrogate (ED A0..BF xx) counts too:
** editflow's own decoder makes it from an unpaired \uD800 escape. -> its length with *cp, or 0.
*/
static size_t utf8_seq(const unsigned char *s, size_t n, unsigned *cp) {
  unsigned c = s[0], lo = 0x80, hi = 0xBF;
  size_t len;
  if (c >= 0xC2 && c <= 0xDF) len = 2, c &= 0x1F;
  else if (c >= 0xE0 && c <= 0xEF) len = 3, c &= 0x0F, lo = c == 0 ? 0xA0 : 0x80;
  else if (c >= 0xF0 && c <= 0xF4) len = 4, c &= 0x07, lo = c == 0 ? 0x90 : 0x80, hi = c == 4 ? 0x8F : 0xBF;
  else return 0;
  if (n < len || s[1] < lo || s[1] > hi)
    return 0;
  for (size_t k = 1; k < len; k++) {
    if ((s[k] & 0xC0) != 0x80)
      return 0;
    c = c << 6 | (s[k] & 0x3F);
  }
  *cp = c;
  return len;
}

/*
** A string as editflow.json's quote() writes it: the quote, the backslash and the control
** characters (iscntrl, as Lua's %c) escaped, short forms where JSON has them. Above ASCII the
** output is always valid UTF-8 (a manifest with a file name in Latin-1 must still be JSON to
** python and jq): a byte that starts no UTF-8 sequence is written as \u00XX, its Latin-1
** reading -- the text stays readable and the encoder never refuses what a file system allows
** (refusing would lose the manifest of a run that was paid for); a surrogate's three bytes as
** its \uD8XX escape, which decodes back to them; C1 controls (U+0080..U+009F) as \u00XX too,
** so JSON on a terminal cannot drive it. Other characters as they are.
*/
static void put_string(encoder *e, const char *s, size_t n) {
  size_t run = 0;
  put(e, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    unsigned cp = c;
    size_t len = 1;
    if (c >= 0x80) {
      len = utf8_seq((const unsigned char *)s + i, n - i, &cp);
      if (len > 0 && cp > 0x9F && (cp < 0xD800 || cp > 0xDFFF)) {
        i += len - 1;
        continue;
      }
      if (len == 0)
        cp = c, len = 1;
    } else if (c != '"' && c != '\\' && !iscntrl(c)) {
      continue;
    }
    put(e, s + run, i - run);
    run = i + len;
    i += len - 1;
    char esc[8];
    switch (cp) {
    case '"': put(e, "\\\"", 2); break;
    case '\\': put(e, "\\\\", 2); break;
    case '\b': put(e, "\\b", 2); break;
    case '\f': put(e, "\\f", 2); break;
    case '\n': put(e, "\\n", 2); break;
    case '\r': put(e, "\\r", 2); break;
    case '\t': put(e, "\\t", 2); break;
    default: put(e, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", cp)); break;
    }
  }
  put(e, s + run, n - run);
  put(e, "\"", 1);
}

/* Integers exactly; an integral float under 2^53 as the integer; otherwise the shortest of
** %.14g and %.17g that reads back as the same number. Non-finite: declined. */
static int put_number(encoder *e, int idx) {
  char text[64];
  int n;
  if (lua_isinteger(e->L, idx)) {
    n = snprintf(text, sizeof text, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(e->L, idx));
  } else {
    double v = (double)lua_tonumber(e->L, idx);
    if (!isfinite(v))
      return ENC_DECLINE;
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
      n = snprintf(text, sizeof text, "%lld", (long long)v);
    } else {
      n = snprintf(text, sizeof text, "%.14g", v);
      if (strtod(text, NULL) != v)
        n = snprintf(text, sizeof text, "%.17g", v);
    }
  }
  put(e, text, (size_t)n);
  return 0;
}

/* Lua's own order of strings (lvm.c l_strcmp): strcoll over the segments between NULs. */
typedef struct key {
  const char *s;
  size_t len;
} key;

static int key_cmp(const void *pa, const void *pb) {
  const key *a = pa, *b = pb;
  const char *s1 = a->s, *s2 = b->s;
  size_t rl1 = a->len, rl2 = b->len;
  for (;;) {
    int t = strcoll(s1, s2);
    if (t != 0)
      return t;
    size_t zl1 = strlen(s1), zl2 = strlen(s2);
    if (zl2 == rl2)
      return zl1 == rl1 ? 0 : 1;
    if (zl1 == rl1)
      return -1;
    zl1++;
    zl2++;
    s1 += zl1;
    rl1 -= zl1;
    s2 += zl2;
    rl2 -= zl2;
  }
}

static int put_value(encoder *e, int idx, int depth);

/* An array: keys exactly 1..n (n > 0), or marked with the array metatable; t[i] for 1..n. */
static int put_array(encoder *e, int t, lua_Integer n, int depth) {
  put(e, "[", 1);
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1)
      put(e, ",", 1);
    lua_rawgeti(e->L, t, i);
    if (put_value(e, lua_gettop(e->L), depth + 1) != 0)
      return ENC_DECLINE;
    lua_pop(e->L, 1);
  }
  put(e, "]", 1);
  return 0;
}

/* An object: string keys only, written in Lua's sort order. The keys' text stays valid while
** the table (on the stack, unchanged) holds them. */
static int put_object(encoder *e, int t, size_t count, int depth) {
  lua_State *L = e->L;
  int top = lua_gettop(L);
  key small[16];
  key *keys = small;
  if (count > sizeof small / sizeof small[0]) {
    if (count > ((size_t)-1) / sizeof *keys)
      return ENC_DECLINE;
    keys = lua_newuserdatauv(L, count * sizeof *keys, 0); /* freed by the collector */
  }
  size_t k = 0;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING || k == count) {
      lua_pop(L, 1);
      return ENC_DECLINE; /* the Lua face raises "cannot encode a table with a ... key" */
    }
    keys[k].s = lua_tolstring(L, -1, &keys[k].len);
    k++;
  }
  qsort(keys, k, sizeof *keys, key_cmp);
  put(e, "{", 1);
  for (size_t i = 0; i < k; i++) {
    if (i > 0)
      put(e, ",", 1);
    put_string(e, keys[i].s, keys[i].len);
    put(e, ":", 1);
    lua_pushlstring(L, keys[i].s, keys[i].len);
    lua_rawget(L, t);
    if (put_value(e, lua_gettop(L), depth + 1) != 0)
      return ENC_DECLINE;
    lua_pop(L, 1);
  }
  put(e, "}", 1);
  lua_settop(L, top); /* the key array, if it needed a userdata */
  return 0;
}

static int put_table(encoder *e, int t, int depth) {
  lua_State *L = e->L;
  if (depth > ENC_MAX_DEPTH)
    return ENC_DECLINE;
  luaL_checkstack(L, 6, "JSON nested too deeply");
  int marked = 0;
  if (lua_getmetatable(L, t)) {
    marked = lua_rawequal(L, -1, e->array_mt);
    lua_pop(L, 1);
    if (!marked)
      return ENC_DECLINE; /* metamethods (__len, __index, __pairs) are Lua's to honour */
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, t);
  if (marked)
    return put_array(e, t, n, depth);
  size_t count = 0;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    lua_pop(L, 1);
    count++;
  }
  if (n > 0 && count == (size_t)n)
    return put_array(e, t, n, depth);
  return put_object(e, t, count, depth);
}

static int put_value(encoder *e, int idx, int depth) {
  lua_State *L = e->L;
  size_t n;
  const char *s;
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
    s = lua_tolstring(L, idx, &n);
    put_string(e, s, n);
    return 0;
  case LUA_TNUMBER:
    return put_number(e, idx);
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx))
      put(e, "true", 4);
    else
      put(e, "false", 5);
    return 0;
  case LUA_TNIL:
    put(e, "null", 4);
    return 0;
  case LUA_TTABLE:
    return put_table(e, idx, depth);
  default:
    if (lua_rawequal(L, idx, e->null)) {
      put(e, "null", 4);
      return 0;
    }
    return ENC_DECLINE;
  }
}

/*
** core.json_encode(value, array_mt, null) -> text | nil (declined: see the top of this file).
** array_mt: the metatable marking arrays; null: the value written as null.
*/
static int json_encode(lua_State *L) {
  lua_settop(L, 3);
  ef_buf *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, EF_BUF_MT);
  encoder e = {L, b, 2, 3};
  if (put_value(&e, 1, 0) != 0) {
    ef_buf_free(b);
    lua_pushnil(L);
    return 1;
  }
  lua_pushlstring(L, b->data ? b->data : "", b->len);
  ef_buf_free(b);
  return 1;
}

/* Adds json_decode, json_encode and json_null (the lightuserdata NULL, like lua-cjson's null)
** to the table on top of the stack. */
void ef_lua_json_register(lua_State *L) {
  lua_pushcfunction(L, json_decode);
  lua_setfield(L, -2, "json_decode");
  lua_pushcfunction(L, json_encode);
  lua_setfield(L, -2, "json_encode");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "json_null");
}
