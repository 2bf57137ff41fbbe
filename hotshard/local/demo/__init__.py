"""What `hotshard demo` runs: `cluster` sends a generated flow through WebSocket clients to a
local cluster (hotshard.local.cluster); `matching` (`--in-process`) replays it through
in-process books only."""
