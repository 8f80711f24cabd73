"""Errors a person can act on: each names the setting or key at fault."""

from __future__ import annotations

from pydantic import ValidationError

from fleetops.urls import redact_urls


class ConfigError(Exception):
    """Bad configuration, reported with the offending key and what is wrong with it."""

    @classmethod
    def from_validation(
        cls, exc: ValidationError, *, source: str, env_prefix: str = ""
    ) -> ConfigError:
        lines = []
        for err in exc.errors():
            key = ".".join(str(part) for part in err["loc"]) or "(root)"
            if env_prefix:
                key = env_prefix + key.upper()
            given = err.get("input")
            if isinstance(given, str):
                # A rejected broker URL (or list of them: FLEETOPS_APPS) must not print a password.
                given = redact_urls(given)
            shown = f" (got {given!r})" if not isinstance(given, dict) and given is not None else ""
            lines.append(f"{key}: {redact_urls(err['msg'])}{shown}")
        return cls(f"invalid configuration in {source}:\n  " + "\n  ".join(lines))
