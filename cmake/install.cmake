# cmake/install.cmake — what `cmake --install` puts where: the host, the Lua module (the C part
# and the Lua files of the library and experiment layers; the host-only editflow/cli/* is
# compiled into the binary and never installed), the man page, bash completion and the ready
# scripts with their assets.
# The four destinations below are cache variables so a packager can move them: the rockspec
# (editflow-dev-1.rockspec) points them at the directories LuaRocks gives ($(BINDIR),
# $(LUADIR), $(LIBDIR)); relative values are taken under CMAKE_INSTALL_PREFIX, absolute ones
# as they are.
include(GNUInstallDirs)

set(EDITFLOW_INSTALL_BIN "bin" CACHE STRING
  "Where the editflow host goes")
set(EDITFLOW_INSTALL_LMOD "share/lua/5.4" CACHE STRING
  "Lua module root for the Lua files (they go to <this>/editflow/)")
set(EDITFLOW_INSTALL_CMOD "lib/lua/5.4" CACHE STRING
  "C module root for editflow.core (it goes to <this>/editflow/core.so)")
set(EDITFLOW_INSTALL_DATA "${CMAKE_INSTALL_DATADIR}" CACHE STRING
  "Root of the architecture-independent data: man page, bash completion, ready scripts")

install(TARGETS editflow RUNTIME DESTINATION ${EDITFLOW_INSTALL_BIN})
install(TARGETS editflow_core LIBRARY DESTINATION ${EDITFLOW_INSTALL_CMOD}/editflow)
install(FILES ${EDITFLOW_LUA_CORE} DESTINATION ${EDITFLOW_INSTALL_LMOD}/editflow)
install(FILES ${EDITFLOW_LUA_CATALOG} DESTINATION ${EDITFLOW_INSTALL_LMOD}/editflow/catalog)
install(FILES ${EDITFLOW_LUA_EXPERIMENT} DESTINATION ${EDITFLOW_INSTALL_LMOD}/editflow/experiment)

# editflow(1) and `editflow <TAB>`: the paths man(1) and bash-completion look in by default.
install(FILES doc/editflow.1 DESTINATION ${EDITFLOW_INSTALL_DATA}/man/man1)
install(FILES completion/editflow.bash DESTINATION ${EDITFLOW_INSTALL_DATA}/bash-completion/completions
        RENAME editflow)

# The ready scripts find their own assets next to themselves (see the head of each script),
# so they run from here whatever the current folder.
install(FILES scripts/style_grid.lua scripts/batch_folder.lua scripts/combine_refs.lua
              scripts/edit_pair.lua
        DESTINATION ${EDITFLOW_INSTALL_DATA}/editflow/scripts)
install(DIRECTORY scripts/assets DESTINATION ${EDITFLOW_INSTALL_DATA}/editflow/scripts)

install(FILES LICENSE README.md docs/api.md DESTINATION ${EDITFLOW_INSTALL_DATA}/doc/editflow)
