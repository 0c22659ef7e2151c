"""Identity and access: OpenID Connect, SMART backend tokens, per-role rules, audit."""
