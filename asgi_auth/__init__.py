"""asgi_auth."""
