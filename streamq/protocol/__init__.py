"""The protocol layer: key schema, Lua scripts, codec and operations. Pure, no I/O."""
