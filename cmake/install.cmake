# cmake/install.cmake — what `cmake --install` puts where (the module, the host, docs, extras).
install(TARGETS editflow RUNTIME DESTINATION bin)
install(TARGETS editflow_core LIBRARY DESTINATION lib/lua/5.4/editflow)
install(FILES ${EDITFLOW_LUA_CORE} DESTINATION share/lua/5.4/editflow)
install(FILES ${EDITFLOW_LUA_EXPERIMENT} DESTINATION share/lua/5.4/editflow/experiment)
