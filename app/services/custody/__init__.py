"""Token custody: the authorizer-token sweep, the token API read path, API keys."""
