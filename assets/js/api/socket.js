// The path of the live WebSocket (/api/v1/ws) on this host; the protocol itself is live.js.

export const socketUrl = () => `wss://${location.host}/api/v1/ws`;
