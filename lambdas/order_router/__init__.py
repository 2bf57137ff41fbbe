"""order_router: API Gateway (WebSocket + HTTP) -> validate, route, produce."""
