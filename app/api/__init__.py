"""The JSON API for the provider's own services (/api/v1), authenticated by API keys."""
