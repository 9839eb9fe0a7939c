"""Local servers that speak the protocols of the platform's external peers, for tests on 127.0.0.1."""
