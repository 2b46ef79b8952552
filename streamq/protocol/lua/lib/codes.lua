-- Result codes shared by the scripts; mirrored by streamq.protocol.ops.Code (a test compares).
local CODE_OK = 1
local CODE_EXISTS = 0
local CODE_FENCED = -1
local CODE_MISSING = -2
local CODE_BAD_STATE = -3
local CODE_DONE = 2
