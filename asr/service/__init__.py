"""The long-running service: engine (queue, workers), job store, HTTP API and its guards, health,
systemd notification, metrics, the pre-start check, and the server that assembles them with the UI."""
