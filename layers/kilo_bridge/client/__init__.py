"""The terminal client: `kilo-bridge jobs …` and `kilo-bridge generate` talk to a Kilo Bridge server over its
HTTP API (httpx), for CI and people. Nothing here imports the server side."""
