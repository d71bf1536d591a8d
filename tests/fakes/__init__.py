"""Loopback fakes of model provider APIs, for tests that use the real SDKs."""
