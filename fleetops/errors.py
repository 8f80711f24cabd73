"""Errors a person can act on: each names the setting or key at fault."""

from __future__ import annotations

from pydantic import ValidationError

from fleetops.urls import MASK, redact_urls


def _may_hold_a_password(redacted: str) -> bool:
    """An "@" the redaction left unmasked: text it could not read as URLs ("redis:/:pw@h")."""
    return redacted.count("@") != redacted.count(MASK + "@")


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
            if isinstance(given, str) and _may_hold_a_password(given):
                shown = f" (got {len(given)} characters, not shown: they may hold a password)"
            elif not isinstance(given, dict) and given is not None:
                shown = f" (got {given!r})"
            else:
                shown = ""
            lines.append(f"{key}: {redact_urls(err['msg'])}{shown}")
        return cls(f"invalid configuration in {source}:\n  " + "\n  ".join(lines))
