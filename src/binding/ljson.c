/*
** ljson.c — core.json_decode: JSON text to Lua values through the engine's pull parser
** (ef_json.c). The value is built on the Lua stack as the events arrive: each open container
** sits on the stack (an object's pending key above it) until its end event, when it becomes
** the value placed into its parent. Nothing here is allocated outside Lua (the parser lives
** in this C frame, escaped strings are decoded into a luaL_Buffer), so a memory error raised
** anywhere leaves nothing to free.
**
** The policy editflow.json relies on is kept here, where it is cheap: integers stay exact,
** an integral double that fits lua_Integer becomes an integer (as math.tointeger would),
** null members of objects are left out, null elsewhere is the caller's sentinel, and every
** array gets the caller's metatable (so an empty array stays distinct from an empty object).
*/
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

/*
** core.json_decode(text, array_mt, null [, max_depth]) -> value | nil, message.
** array_mt: a table set as the metatable of every array, or nil for none. null: what a JSON
** null becomes in arrays and at the top. max_depth: 1..EF_JSON_MAX_DEPTH, default 64.
** Invalid text is an operational failure (nil, "expected ':' at byte 17"); bad arguments raise.
*/
static int json_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer max_depth = luaL_optinteger(L, 4, EF_JSON_DEFAULT_DEPTH);
  luaL_argcheck(L, max_depth >= 1 && max_depth <= EF_JSON_MAX_DEPTH, 4, "must be 1..1024");
  lua_settop(L, 4);
  int has_mt = !lua_isnil(L, 2);
  /* count[d]: elements so far of the array open at depth d; -1 when that level is an object */
  lua_Integer count[EF_JSON_MAX_DEPTH + 1];
  ef_json j;
  ef_json_event ev;
  ef_json_init(&j, s, n, (int)max_depth);
  for (;;) {
    switch (ef_json_next(&j, &ev)) {
    case EF_JSON_ERROR:
      lua_settop(L, 4);
      lua_pushnil(L);
      lua_pushstring(L, j.err);
      return 2;
    case EF_JSON_END:
      return 1; /* the value, alone above the arguments */
    case EF_JSON_OBJECT:
    case EF_JSON_ARRAY:
      if (!lua_checkstack(L, 4)) {
        lua_settop(L, 4);
        lua_pushnil(L);
        lua_pushliteral(L, "JSON nested too deeply for the Lua stack");
        return 2;
      }
      lua_newtable(L);
      count[j.depth] = ev.type == EF_JSON_ARRAY ? 0 : -1;
      if (ev.type == EF_JSON_ARRAY && has_mt) {
        lua_pushvalue(L, 2);
        lua_setmetatable(L, -2);
      }
      continue;
    case EF_JSON_KEY:
      push_string(L, &ev);
      continue;
    case EF_JSON_OBJECT_END:
    case EF_JSON_ARRAY_END:
      break; /* the finished container at the top is the value */
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
      lua_pushboolean(L, ev.type == EF_JSON_TRUE);
      break;
    case EF_JSON_NULL:
      if (j.depth > 0 && count[j.depth] < 0)
        lua_pushnil(L); /* rawset below removes the member: {"a":1,"a":null} has no "a" */
      else
        lua_pushvalue(L, 3);
      break;
    }
    /* a complete value is on top: place it into the container it belongs to */
    if (j.depth == 0)
      continue; /* the whole value; the next event is EF_JSON_END or an error */
    if (count[j.depth] < 0)
      lua_rawset(L, -3); /* [object, key, value] */
    else
      lua_rawseti(L, -2, ++count[j.depth]);
  }
}

/* Adds json_decode and json_null (the lightuserdata NULL, like lua-cjson's null) to the
** table on top of the stack. */
void ef_lua_json_register(lua_State *L) {
  lua_pushcfunction(L, json_decode);
  lua_setfield(L, -2, "json_decode");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "json_null");
}
