"""Framework adapters: the guards' decisions in each framework's own idiom.

Each adapter lives in its own module and is the only place that imports its
framework, so ``import asgi_auth`` never needs FastAPI or Litestar:

- :mod:`asgi_auth.integrations.fastapi`: ``Authorize(policy)`` dependencies, declared
  in the OpenAPI document;
- :mod:`asgi_auth.integrations.litestar`: ``guard_for(policy)`` route guards.

Both decide through :meth:`asgi_auth.authz.Authorizer.check` and refuse with the same
status codes and ``WWW-Authenticate`` challenges as :class:`asgi_auth.authz.Guard`.
They need :class:`asgi_auth.AuthMiddleware` in front of the app.
"""
