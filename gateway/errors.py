"""The one exception root of the gateway package. Raise the narrowest subclass,
chained with `from err` when it wraps another error."""


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is wrong; the message names the key and the problem."""


class StorageError(GatewayError):
    """The database cannot take writes (disk full, read-only, locked)."""


class BindingError(GatewayError):
    """A pairing would break one code, one account (or names an unknown device)."""


class DeviceNotConnected(GatewayError):
    """The device has no live link (never heard, or offline)."""


class NotFound(GatewayError):
    """The named device, window or invitation does not exist."""


class InvalidRequest(GatewayError):
    """A request (API or CLI) is malformed; the message says which field."""


class NotProvisioned(BindingError):
    """The device has no key registered yet: the technician provisions it over USB first."""
