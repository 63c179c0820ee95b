"""The HTTP server: create_app(settings, runtime), routes declared from one table, the one chat
handler that serves any dialect's codec, streaming writers and the edge checks (host, origin,
auth, body size). Routes decode, dispatch to the runtime and encode."""
