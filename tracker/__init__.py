"""ho-tracker: follows patients at risk of heterotopic ossification to a safe resection."""

__version__ = "0.1.0"
