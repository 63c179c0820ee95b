"""The HTTP server: create_app(settings, runtime), thin routes, streaming writers and the edge
checks (host, origin, auth, body size). Routes decode, dispatch to the runtime and encode."""
